package kubeauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/meshwaf/meshwaf/xds"
)

// NodeNameExtra is the user extra the API server sets, for a token bound
// to a pod, to the name of the pod's node.
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// DefaultAudience is the audience agents' tokens are requested for.
const DefaultAudience = "meshwaf"

// Config configures a TokenReviewer.
type Config struct {
	// Reviews creates TokenReviews (clientset.AuthenticationV1().TokenReviews()).
	Reviews authenticationclient.TokenReviewInterface
	// Audiences a token must be valid for (default DefaultAudience). A
	// token meant for the API server itself is refused.
	Audiences []string
	// Agents are the ServiceAccounts, "namespace/name", whose tokens make
	// their caller an agent. A valid token of another ServiceAccount
	// authenticates a caller that may read ECDS only.
	Agents []string
	// Fallback authenticates callers that send no token (e.g. gateways
	// with client certificates); nil admits them as anonymous, ECDS only.
	Fallback xds.Authenticator
	// CacheTTL is how long a review's answer is reused (default 1 minute),
	// so a fleet reconnecting at once costs one review per agent, not one
	// per stream. Refusals are cached for a tenth of it.
	CacheTTL time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// TokenReviewer is an xds.Authenticator.
type TokenReviewer struct {
	cfg Config

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cached
}

type cached struct {
	peer    xds.Peer
	err     error
	expires time.Time
}

// maxCached bounds the cache; past it, expired entries are swept and, if
// that is not enough, the cache starts over.
const maxCached = 100_000

// New returns a TokenReviewer.
func New(cfg Config) (*TokenReviewer, error) {
	if cfg.Reviews == nil {
		return nil, errors.New("kubeauth: Config.Reviews is required")
	}
	if len(cfg.Agents) == 0 {
		return nil, errors.New("kubeauth: at least one agent ServiceAccount is required")
	}
	for _, sa := range cfg.Agents {
		if ns, name, ok := strings.Cut(sa, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("kubeauth: agent ServiceAccount %q is not namespace/name", sa)
		}
	}
	if len(cfg.Audiences) == 0 {
		cfg.Audiences = []string{DefaultAudience}
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &TokenReviewer{cfg: cfg, cache: map[[sha256.Size]byte]cached{}}, nil
}

// Authenticate implements xds.Authenticator.
func (r *TokenReviewer) Authenticate(ctx context.Context) (xds.Peer, error) {
	token, found, err := bearerToken(ctx)
	if err != nil {
		return xds.Peer{}, err
	}
	if !found {
		if r.cfg.Fallback != nil {
			return r.cfg.Fallback.Authenticate(ctx)
		}
		return xds.Peer{Name: "anonymous"}, nil
	}
	// A bearer token sent in clear text could be replayed by anyone on
	// the path; it is refused even if valid.
	if p, ok := peer.FromContext(ctx); !ok || p.AuthInfo == nil || p.AuthInfo.AuthType() != (credentials.TLSInfo{}).AuthType() {
		return xds.Peer{}, errors.New("bearer tokens are accepted over TLS only")
	}
	key := sha256.Sum256([]byte(token))
	if c, ok := r.lookup(key); ok {
		return c.peer, c.err
	}
	p, err := r.review(ctx, token)
	var apiErr *apiError
	if errors.As(err, &apiErr) {
		return xds.Peer{}, err // the API server's trouble, not the token's: not cached
	}
	ttl := r.cfg.CacheTTL
	if err != nil {
		ttl /= 10
	}
	r.store(key, cached{peer: p, err: err, expires: r.cfg.Now().Add(ttl)})
	return p, err
}

// apiError is a failed TokenReview call.
type apiError struct{ err error }

func (e *apiError) Error() string { return "token review: " + e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func (r *TokenReviewer) review(ctx context.Context, token string) (xds.Peer, error) {
	review, err := r.cfg.Reviews.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: r.cfg.Audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return xds.Peer{}, &apiError{err}
	}
	st := review.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return xds.Peer{}, fmt.Errorf("token refused: %s", reason)
	}
	if !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(r.cfg.Audiences, a) }) {
		return xds.Peer{}, fmt.Errorf("token is for %v, not %v", st.Audiences, r.cfg.Audiences)
	}
	p := xds.Peer{Name: st.User.Username}
	ns, name, isSA := serviceAccountOf(st.User.Username)
	if isSA && slices.Contains(r.cfg.Agents, ns+"/"+name) {
		p.Agent = true
		if nodes := st.User.Extra[NodeNameExtra]; len(nodes) == 1 {
			p.Node = nodes[0]
		}
	}
	return p, nil
}

// serviceAccountOf reads "system:serviceaccount:<namespace>:<name>".
func serviceAccountOf(username string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(username, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	return namespace, name, ok && namespace != "" && name != ""
}

// bearerToken reads "authorization: Bearer <token>" from the gRPC
// metadata.
func bearerToken(ctx context.Context) (token string, found bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return "", false, nil
	}
	if len(values) > 1 {
		return "", false, errors.New("more than one authorization header")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", false, errors.New("authorization is not a bearer token")
	}
	return strings.TrimSpace(token), true, nil
}

func (r *TokenReviewer) lookup(key [sha256.Size]byte) (cached, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cache[key]
	if !ok || r.cfg.Now().After(c.expires) {
		return cached{}, false
	}
	return c, true
}

func (r *TokenReviewer) store(key [sha256.Size]byte, c cached) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxCached {
		now := r.cfg.Now()
		for k, v := range r.cache {
			if now.After(v.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= maxCached {
			clear(r.cache)
		}
	}
	r.cache[key] = c
}
