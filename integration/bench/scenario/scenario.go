// Package scenario holds the requests meshwaf's benchmarks send: the bench
// package's five scenarios, also fed in-process by the engine's
// side-by-side measurement, so that both measure the same bytes. It imports
// nothing of meshwaf.
package scenario

import (
	"fmt"
	"net/url"
	"strings"
)

// Scenario is one kind of request, sent the same way by every mode.
type Scenario struct {
	Name        string
	Method      string
	Target      string // path and query, encoded
	ContentType string
	Body        []byte
	// Headers are sent after BrowserHeaders (the hostile requests' only).
	Headers [][2]string
	// Blocked says whether a Prevent policy must block it, which the
	// harness checks in every mode that inspects.
	Blocked bool
}

// BrowserHeaders are sent with every request. A browser-like set keeps the
// benign scenarios benign at paranoia level 2, where missing Accept or
// User-Agent headers are findings themselves.
var BrowserHeaders = [][2]string{
	{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
	{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	{"accept-language", "en-GB,en;q=0.9"},
	{"accept-encoding", "gzip, deflate"},
}

// All are the requests of issue 4, in report order.
func All() []Scenario {
	return []Scenario{
		{Name: "benign GET", Method: "GET", Target: "/products/shoes?color=blue&size=42&page=2"},
		{Name: "form POST", Method: "POST", Target: "/comments",
			ContentType: "application/x-www-form-urlencoded",
			Body:        []byte("author=alice&comment=Lovely+shoes+and+very+comfortable&rating=5")},
		{Name: "1 KB JSON POST", Method: "POST", Target: "/api/orders",
			ContentType: "application/json", Body: jsonBody(1024)},
		{Name: "10 KB form POST", Method: "POST", Target: "/profile",
			ContentType: "application/x-www-form-urlencoded", Body: formBody(10 * 1024)},
		{Name: "SQLi GET", Method: "GET", Target: "/search?q=" + url.QueryEscape("1' OR '1'='1' UNION SELECT username, password FROM users--"),
			Blocked: true},
	}
}

// prose is ordinary text: it must not look like an attack at paranoia
// level 2, or the benign bodies would measure the cost of a finding.
var prose = []string{
	"lovely", "summer", "garden", "flowers", "bloom", "bright", "yellow", "petals", "under", "warm",
	"sunshine", "children", "played", "happily", "beside", "river", "evening", "breeze", "gentle", "colours",
}

func words(n int, seed int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = prose[(i*7+seed)%len(prose)]
	}
	return strings.Join(w, " ")
}

// jsonBody is an order document of about size bytes.
func jsonBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"customer":{"id":4711,"name":"Alice Example","email":"alice@example.com"},"items":[`)
	for i := 0; b.Len() < size-80; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"sku":"SKU%04d","quantity":%d,"note":"%s"}`, i, i%3+1, words(6, i))
	}
	b.WriteString(`],"currency":"EUR","gift":false}`)
	return []byte(b.String())
}

// formBody is a urlencoded form of about size bytes, spread over fields so
// that no single value exceeds what a real profile form would carry.
func formBody(size int) []byte {
	v := url.Values{}
	for i := 0; len(v.Encode()) < size-200; i++ {
		v.Set(fmt.Sprintf("field%02d", i), words(30, i))
	}
	return []byte(v.Encode())
}
