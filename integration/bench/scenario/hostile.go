package scenario

import (
	"fmt"
	"strings"
)

// Hostile are requests built to cost a WAF as much as possible (issue 14):
// the integration test sends them through Envoy to the agent and checks
// each gets an answer in time with the agent's memory bounded; the bench
// sends the same bytes to meshwaf and to nginx + ModSecurity for the cost.
// bodyLimit is the policy's request body limit, which the last one
// exceeds by one byte. Which answer each gets differs by system and is
// for the caller to judge, so Blocked is not set.
func Hostile(bodyLimit int) []Scenario {
	var parts strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&parts, "--xyz\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nvalue %d\r\n", i, i)
	}
	parts.WriteString("--xyz--\r\n")
	headers := make([][2]string, 1000)
	for i := range headers {
		headers[i] = [2]string{fmt.Sprintf("x-h%d", i), "v"}
	}
	const form = "application/x-www-form-urlencoded"
	return []Scenario{
		// Ten times the 1,000 arguments the WAFs parse.
		{Name: "10,000 query arguments", Method: "GET", Target: "/?" + strings.Repeat("a=1&", 10000) + "b=1"},
		{Name: "JSON nested 10,000 deep", Method: "POST", Target: "/api", ContentType: "application/json",
			Body: []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))},
		{Name: "1,000 headers", Method: "GET", Target: "/", Headers: headers},
		{Name: "multipart with 1,000 parts", Method: "POST", Target: "/up",
			ContentType: "multipart/form-data; boundary=xyz", Body: []byte(parts.String())},
		{Name: "a body of the limit + 1", Method: "POST", Target: "/c", ContentType: form,
			Body: []byte("a=" + strings.Repeat("b", bodyLimit-1))},
	}
}
