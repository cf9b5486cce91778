package kubeauth

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshwaf/meshwaf/xds"
)

// fakeAPI answers TokenReviews from a table of known tokens and counts the
// calls; the real API server is exercised by integration/kube.
func fakeAPI(t *testing.T, reviews *int, failing *bool) *fake.Clientset {
	t.Helper()
	users := map[string]authenticationv1.TokenReviewStatus{
		"agent-a": {Authenticated: true, Audiences: []string{"meshwaf"}, User: authenticationv1.UserInfo{
			Username: "system:serviceaccount:meshwaf-system:meshwaf-agent",
			Extra:    map[string]authenticationv1.ExtraValue{NodeNameExtra: {"node-a"}},
		}},
		"agent-unbound": {Authenticated: true, Audiences: []string{"meshwaf"}, User: authenticationv1.UserInfo{
			Username: "system:serviceaccount:meshwaf-system:meshwaf-agent",
		}},
		"other-sa": {Authenticated: true, Audiences: []string{"meshwaf"}, User: authenticationv1.UserInfo{
			Username: "system:serviceaccount:shop:default",
		}},
		"api-audience": {Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"}, User: authenticationv1.UserInfo{
			Username: "system:serviceaccount:meshwaf-system:meshwaf-agent",
		}},
	}
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		*reviews++
		if *failing {
			return true, nil, errors.New("connection refused")
		}
		review := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		st, ok := users[review.Spec.Token]
		if !ok {
			st = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		review.Status = st
		return true, review, nil
	})
	return client
}

func tlsContext(token string) context.Context {
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{}}})
	if token != "" {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
	}
	return ctx
}

func TestTokenReviewer(t *testing.T) {
	var reviews int
	var failing bool
	r, err := New(Config{
		Reviews: fakeAPI(t, &reviews, &failing).AuthenticationV1().TokenReviews(),
		Agents:  []string{"meshwaf-system/meshwaf-agent"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		ctx     context.Context
		want    xds.Peer
		wantErr bool
	}{
		"agent token bound to a node": {ctx: tlsContext("agent-a"),
			want: xds.Peer{Name: "system:serviceaccount:meshwaf-system:meshwaf-agent", Agent: true, Node: "node-a"}},
		"agent token not bound to a pod: any node": {ctx: tlsContext("agent-unbound"),
			want: xds.Peer{Name: "system:serviceaccount:meshwaf-system:meshwaf-agent", Agent: true}},
		"another ServiceAccount: not an agent": {ctx: tlsContext("other-sa"),
			want: xds.Peer{Name: "system:serviceaccount:shop:default"}},
		"token for the API server's audience": {ctx: tlsContext("api-audience"), wantErr: true},
		"unknown token":                       {ctx: tlsContext("garbage"), wantErr: true},
		"no token: anonymous":                 {ctx: tlsContext(""), want: xds.Peer{Name: "anonymous"}},
		"token over plain text": {ctx: metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer agent-a")),
			wantErr: true},
		"not a bearer token": {ctx: metadata.NewIncomingContext(tlsContext(""), metadata.Pairs("authorization", "Basic YWJj")),
			wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := r.Authenticate(tc.ctx)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("peer = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A fleet reconnecting at once costs one review per token; an API server
// failure is not remembered as a refusal.
func TestTokenReviewerCaches(t *testing.T) {
	var reviews int
	var failing bool
	now := time.Unix(0, 0)
	r, err := New(Config{
		Reviews: fakeAPI(t, &reviews, &failing).AuthenticationV1().TokenReviews(),
		Agents:  []string{"meshwaf-system/meshwaf-agent"},
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := r.Authenticate(tlsContext("agent-a")); err != nil {
			t.Fatal(err)
		}
	}
	if reviews != 1 {
		t.Fatalf("%d reviews for 100 streams with one token, want 1", reviews)
	}
	now = now.Add(2 * time.Minute)
	failing = true
	if _, err := r.Authenticate(tlsContext("agent-a")); err == nil {
		t.Fatal("an expired entry was used although the API server is down")
	}
	failing = false
	if _, err := r.Authenticate(tlsContext("agent-a")); err != nil {
		t.Fatalf("the API server's failure was cached: %v", err)
	}
	if reviews != 3 {
		t.Fatalf("%d reviews, want 3", reviews)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	var reviews int
	var failing bool
	reviewsAPI := fakeAPI(t, &reviews, &failing).AuthenticationV1().TokenReviews()
	for name, cfg := range map[string]Config{
		"no client":                   {Agents: []string{"a/b"}},
		"no agents":                   {Reviews: reviewsAPI},
		"agent not namespace/name":    {Reviews: reviewsAPI, Agents: []string{"meshwaf-agent"}},
		"agent with too many slashes": {Reviews: reviewsAPI, Agents: []string{"a/b/c"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
