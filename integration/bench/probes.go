package bench

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"

	schema "github.com/coreruleset/ftw-tests-schema/v2/types"
	"github.com/coreruleset/go-ftw/v2/ftwhttp"
	"github.com/coreruleset/go-ftw/v2/test"

	"github.com/meshwaf/meshwaf/policytest"

	"github.com/meshwaf/meshwaf/integration/crssuite"
)

// The differential corpus (differential.go) is every request of the CRS
// regression tests and the payload lists under corpus/ (corpus/README.md
// says where they come from), each payload sent in a query parameter.

//go:embed corpus
var corpusFS embed.FS

// corpusProbe is one request of the differential corpus.
type corpusProbe struct {
	// ID names the request for the report and the reviewed list:
	// crs/<rule>-<test>[/<stage>] or payloads/<file>:<line>.
	ID string
	// Category is the CRS test directory (REQUEST-942-APPLICATION-ATTACK-SQLI)
	// or the payload list's attack class (path-traversal).
	Category string
	// build writes the request with the given Host and probe header value.
	build func(host, mark string) ([]byte, error)
}

// probeHeader carries each request's number, so that ModSecurity's audit
// record of a request can be told apart from the others'. A header of
// digits matches no CRS rule at the levels compared.
const probeHeader = "x-differential-probe"

// crsProbes are the requests of the CRS v4.25 regression tests, one per
// stage, in file order. The RESPONSE-* files test what the backend answers
// (a reflecting backend the bench does not have), so they are left out.
func crsProbes() ([]corpusProbe, error) {
	files, err := crssuite.Files()
	if err != nil {
		return nil, err
	}
	var out []corpusProbe
	for _, f := range files {
		category := path.Base(f.Dir)
		if strings.HasPrefix(category, "RESPONSE-") {
			continue
		}
		for _, tc := range f.Test.Tests {
			for i, stage := range tc.Stages {
				id := "crs/" + tc.IdString()
				if len(tc.Stages) > 1 {
					id += fmt.Sprintf("/%d", i+1)
				}
				in := stage.Input
				out = append(out, corpusProbe{ID: id, Category: category, build: func(host, mark string) ([]byte, error) {
					return ftwRequest(in, host, mark)
				}})
			}
		}
	}
	return out, nil
}

// hostLine finds a raw request's Host header.
var hostLine = regexp.MustCompile(`(?im)^host:[^\r\n]*`)

// ftwRequest writes a CRS test's request as go-ftw sends it, with the
// Host header replaced (the level's host) and the probe header added. A
// test given as raw bytes (encoded_request) gets the same two changes in
// its bytes; one without a Host header gets none, and is answered by
// whatever each server does with it.
func ftwRequest(input schema.Input, host, mark string) ([]byte, error) {
	in := test.NewInput(&input)
	if in.EncodedRequest != "" {
		raw, err := base64.StdEncoding.DecodeString(in.EncodedRequest)
		if err != nil {
			return nil, err
		}
		loc := hostLine.FindIndex(raw)
		if loc == nil {
			return raw, nil
		}
		return bytes.Join([][]byte{raw[:loc[0]], []byte("Host: " + host + "\r\n" + probeHeader + ": " + mark), raw[loc[1]:]}, nil), nil
	}
	headers := in.GetHeaders().Clone()
	headers.Set("Host", host)
	headers.Add(probeHeader, mark)
	autocomplete := in.AutocompleteHeaders == nil || *in.AutocompleteHeaders
	req := ftwhttp.NewRequest(&ftwhttp.RequestLine{Method: in.GetMethod(), URI: in.GetURI(), Version: in.GetVersion()},
		headers, in.GetData(), autocomplete)
	return ftwhttp.BuildRequest(req)
}

// payloadProbes are the lines of the payload lists under corpus/, each
// sent as the value of the query parameter q of a GET with a browser's
// headers. Only what a request target cannot carry is percent-encoded
// (queryValue), so that a payload written already encoded (..%2f) reaches
// the WAF as its author wrote it.
func payloadProbes() ([]corpusProbe, error) {
	var out []corpusProbe
	err := fs.WalkDir(corpusFS, "corpus", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".txt" {
			return err
		}
		raw, err := fs.ReadFile(corpusFS, p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		category, _, _ := strings.Cut(name, ".")
		for i, line := range strings.Split(string(raw), "\n") {
			line = strings.TrimRight(line, "\r")
			if strings.TrimSpace(line) == "" {
				continue
			}
			target := "/?q=" + queryValue(line)
			out = append(out, corpusProbe{ID: fmt.Sprintf("payloads/%s:%d", name, i+1), Category: category,
				build: func(host, mark string) ([]byte, error) { return browserGET(target, host, mark), nil }})
		}
		return nil
	})
	return out, err
}

// browserGET is a GET of target with the headers the bench's scenarios
// send, as a browser would.
func browserGET(target, host, mark string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, host)
	for _, h := range browserHeaders {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	fmt.Fprintf(&b, "%s: %s\r\nConnection: close\r\n\r\n", probeHeader, mark)
	return []byte(b.String())
}

// queryValue percent-encodes the bytes RFC 3986 does not allow in a query
// (space, quotes, angle brackets, #, backslash, controls, non-ASCII...) and
// a % that starts no escape; the rest, & and = included, stays as written.
func queryValue(s string) string {
	const allowed = "-._~!$&'()*+,;=:@/?"
	isHex := func(c byte) bool {
		return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte(allowed, c) >= 0:
			b.WriteByte(c)
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// asPolicyTest reads raw request bytes into the form meshwaf test takes,
// to ask the agent's engine in-process what it makes of the request as
// sent (before any proxy touched it). ok is false for bytes Go's HTTP
// parser refuses.
func asPolicyTest(raw []byte) (req policytest.Request, ok bool) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return req, false
	}
	defer r.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(r.Body); err != nil {
		return req, false
	}
	req = policytest.Request{Method: r.Method, Scheme: "http", Authority: r.Host, Target: r.RequestURI, Body: body.Bytes()}
	for name, values := range r.Header {
		for _, v := range values {
			req.Headers = append(req.Headers, [2]string{name, v})
		}
	}
	return req, true
}
