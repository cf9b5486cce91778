package policytest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Requests read as curl would send them: data makes a form POST, headers
// keep their order, curl's own headers are added unless given, and a file
// is read as curl reads it.
func TestParseCurl(t *testing.T) {
	file := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(file, []byte("a=1\r\nb=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args                        []string
		method, host, body, ctype   string
		userAgent, accept, uri, err string
	}{
		"GET with a Host header": {args: []string{"-H", "Host: shop.example.com", "http://gateway/?id=1"},
			method: "GET", host: "shop.example.com", uri: "/?id=1", userAgent: curlUserAgent, accept: "*/*"},
		"the URL's host": {args: []string{"http://api.example.com:8080/x"}, method: "GET", host: "api.example.com:8080", uri: "/x",
			userAgent: curlUserAgent, accept: "*/*"},
		"-d is a form POST": {args: []string{"-d", "a=1", "-d", "b=2", "http://h/"}, method: "POST", host: "h", uri: "/",
			body: "a=1&b=2", ctype: "application/x-www-form-urlencoded", userAgent: curlUserAgent, accept: "*/*"},
		"-X and a content type win": {args: []string{"-X", "put", "-H", "Content-Type: application/json", "--data-raw", "@x", "-A", "probe/1", "http://h/"},
			method: "PUT", host: "h", uri: "/", body: "@x", ctype: "application/json", userAgent: "probe/1", accept: "*/*"},
		"-d @file drops line breaks": {args: []string{"-d", "@" + file, "http://h/"}, method: "POST", host: "h", uri: "/",
			body: "a=1b=2", ctype: "application/x-www-form-urlencoded", userAgent: curlUserAgent, accept: "*/*"},
		"--data-binary @file keeps them": {args: []string{"--data-binary", "@" + file, "http://h/"}, method: "POST", host: "h", uri: "/",
			body: "a=1\r\nb=2\n", ctype: "application/x-www-form-urlencoded", userAgent: curlUserAgent, accept: "*/*"},
		"no URL":         {args: []string{"-X", "GET"}, err: "no URL"},
		"a relative URL": {args: []string{"/x"}, err: "needs a scheme and a host"},
		"a raw target": {args: []string{"http://h/a b?x=<script>#frag"}, method: "GET", host: "h", uri: "/a b?x=<script>",
			userAgent: curlUserAgent, accept: "*/*"},
		"no path":         {args: []string{"http://h?x=1"}, method: "GET", host: "h", uri: "/?x=1", userAgent: curlUserAgent, accept: "*/*"},
		"two URLs":        {args: []string{"http://a/", "http://b/"}, err: "a second URL"},
		"missing value":   {args: []string{"http://a/", "-H"}, err: "-H needs a value"},
		"missing file":    {args: []string{"-d", "@/nonexistent", "http://a/"}, err: "/nonexistent"},
		"unknown options": {args: []string{"-k", "http://a/"}, err: "-k is not supported"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := ParseCurl(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctype, _ := r.header("Content-Type")
			ua, _ := r.header("User-Agent")
			accept, _ := r.header("Accept")
			if r.Method != tc.method || r.Host() != tc.host || string(r.Body) != tc.body || ctype != tc.ctype ||
				ua != tc.userAgent || accept != tc.accept || r.Target != tc.uri {
				t.Errorf("got %s %s%s body %q type %q UA %q accept %q", r.Method, r.Host(), r.Target, r.Body, ctype, ua, accept)
			}
		})
	}
}

// Request lines split as a shell splits them.
func TestShellWords(t *testing.T) {
	tests := map[string][]string{
		`curl -H 'Host: a b' "http://h/?q=1"`: {"curl", "-H", "Host: a b", "http://h/?q=1"},
		`-d "x=\"1\" \$y" 'it''s'`:            {"-d", `x="1" $y`, "its"},
		`a\ b  c`:                             {"a b", "c"},
		`-d ''`:                               {"-d", ""},
	}
	for line, want := range tests {
		got, err := shellWords(line)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("shellWords(%s) = %q, %v; want %q", line, got, err, want)
		}
	}
	for _, bad := range []string{`'open`, `"open`} {
		if _, err := shellWords(bad); err == nil {
			t.Errorf("shellWords(%s): no error", bad)
		}
	}
}
