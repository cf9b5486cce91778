package snapshot

import "testing"

func TestIntersect(t *testing.T) {
	tests := map[string]struct {
		a, b   string
		want   string
		wantOK bool
	}{
		"equal exact hosts":               {"a.example.com", "a.example.com", "a.example.com", true},
		"gateway-wide narrows to exact":   {"*", "shop.example.com", "shop.example.com", true},
		"wildcard narrows to exact":       {"*.example.com", "a.example.com", "a.example.com", true},
		"exact inside wildcard":           {"a.example.com", "*.example.com", "a.example.com", true},
		"wildcard does not cover apex":    {"*.example.com", "example.com", "", false},
		"nested wildcard":                 {"*.example.com", "*.a.example.com", "*.a.example.com", true},
		"different exact hosts":           {"a.example.com", "b.example.com", "", false},
		"suffix without dot is no match":  {"*.example.com", "badexample.com", "", false},
		"disjoint wildcards do not match": {"*.a.com", "*.b.com", "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := intersect(tc.a, tc.b)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("intersect(%q, %q) = %q, %v; want %q, %v", tc.a, tc.b, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
