package engine

import (
	"reflect"
	"regexp"
	"testing"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	"rsc.io/binaryregexp"
)

// captureTx records what an operator captures. Operators use nothing else
// of the transaction.
type captureTx struct {
	plugintypes.TransactionState
	capturing bool
	captured  map[int]string
}

func (t *captureTx) Capturing() bool { return t.capturing }

func (t *captureTx) CaptureField(i int, v string) {
	if t.captured == nil {
		t.captured = map[int]string{}
	}
	t.captured[i] = v
}

// stockEvaluate is what Coraza's own @rx does with Go's regexp: the
// reference the engine must reproduce exactly.
func stockEvaluate(t *testing.T, pattern, value string, tx *captureTx) bool {
	t.Helper()
	var re interface {
		MatchString(string) bool
		FindStringSubmatchIndex(string) []int
	}
	var err error
	if matchesBytes(rxFlags + pattern) {
		re, err = binaryregexp.Compile(pattern)
	} else {
		re, err = regexp.Compile(rxFlags + pattern)
	}
	if err != nil {
		t.Fatalf("compile %q: %v", pattern, err)
	}
	if !tx.Capturing() {
		return re.MatchString(value)
	}
	m := re.FindStringSubmatchIndex(value)
	if m == nil {
		return false
	}
	for i := 0; i < len(m)/2 && i < 9; i++ {
		if m[2*i] < 0 {
			tx.CaptureField(i, "")
		} else {
			tx.CaptureField(i, value[m[2*i]:m[2*i+1]])
		}
	}
	return true
}

// rxCases are patterns and values on which RE2 and Go's regexp are easy to
// get to disagree: bytes that are not UTF-8, multibyte characters, empty
// matches, case folding beyond ASCII, line anchors and groups that take no
// part in a match.
var rxCases = []struct{ pattern, value string }{
	// CRS 942270's expression: the SQL survives the \xff only in Go.
	{`(?i)union.*?select.*?from`, "1' UNION\xff SELECT password FROM users--"},
	{`(?i)union.*?select.*?from`, "1' UNION SELECT password FROM users--"},
	{`(?i)<script[^>]*>[\s\S]*?`, "<script\xff>"},
	{`(?i)<script[^>]*>[\s\S]*?`, "<script>"},
	{`union\s+select`, "union\xff\xfeselect"},
	{`a\W+b`, "a\xffb"},
	{`a.b`, "a\xffb"},
	{`a[^x]b`, "a\xc3b"},
	{"\ufffd", "\xff"},
	{"^\ufffd", "a\xff"},
	{`é`, "caf\xc3\xa9"},
	{`caf.$`, "caf\xc3\xa9"},
	{`\bé`, " é"},
	{`\Bo`, "éo"},
	{`\B`, "日本"},
	{`\B`, "1ſA"},
	{`(?i)k`, "\u212a"}, // Kelvin sign folds to k
	{`(?i)s`, "\u017f"}, // long s folds to s
	{`(?i)straße`, "STRASSE"},
	{`^abc$`, "x\nabc\ny"},
	{`a.c`, "a\nc"},
	{``, ""},
	{`x*`, ""},
	{`x*`, "abc"},
	{`(a)|(b)`, "b"},
	{`(a)?(b)`, "b"},
	{`(a+)(b+)?`, "aaa"},
	{`(?:(\d+)-)?(\d+)`, "id 42"},
	{`(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)`, "abcdefghijk"},
	{`(?P<name>\w+)@`, "user@example.com"},
	{`[\s\x0b]+`, "a\x0bb"},
	{`\pL+`, "grüße"},
	{`[^\x00-\x7f]`, "plain"},
	{`[^\x00-\x7f]`, "pl\xc3\xa4in"},
	{`[^\x00-\x7f]`, "pl\x80in"},
	// Patterns Coraza matches over bytes (binaryregexp, no flags).
	{`\x{bc}[^>\x{be}]*[>\x{be}]`, "\xbcscript\xbe"},
	{`\x{bc}([^>\x{be}]*)[>\x{be}]`, "x\xbcscr\xffipt>"},
	{`(?i)\xc9t\xe9`, "\xe9T\xc9"},
	{`\xe2\x80.`, "\xe2\x80\x98"},
	{`\xe2\x80.`, "\xe2\x80\n"},
	{`\xff^a`, "\xff\na"},
}

// TestRXAgreesWithGoRegexp runs every case through the engine's operator
// with RE2 taking every value it may (no length threshold) and checks the
// match and the captures against Coraza's operator semantics.
func TestRXAgreesWithGoRegexp(t *testing.T) {
	defer setMinFastLen(0)()
	for _, c := range rxCases {
		for _, capturing := range []bool{false, true} {
			op, err := newRX(plugintypes.OperatorOptions{Arguments: c.pattern})
			if err != nil {
				t.Fatalf("%q: %v", c.pattern, err)
			}
			got, want := &captureTx{capturing: capturing}, &captureTx{capturing: capturing}
			gotMatch := op.Evaluate(got, c.value)
			wantMatch := stockEvaluate(t, c.pattern, c.value, want)
			if gotMatch != wantMatch || !reflect.DeepEqual(got.captured, want.captured) {
				t.Errorf("@rx %q on %q (capturing %v): engine %v %v, Go's regexp %v %v",
					c.pattern, c.value, capturing, gotMatch, got.captured, wantMatch, want.captured)
			}
		}
	}
}

// TestRE2AloneDisagrees shows why the engine does not hand every value to
// RE2: on the cases where the engine falls back, RE2 alone gets a different
// answer. If go-re2 ever matches like Go's regexp here, the fallbacks can be
// reconsidered.
func TestRE2AloneDisagrees(t *testing.T) {
	defer setMinFastLen(0)()
	for _, c := range []struct {
		pattern, value string
		// wasmOnly: Debian's libre2 (build tag re2_cgo) folds Latin-1
		// case like binaryregexp; go-re2's WebAssembly build does not.
		wasmOnly bool
	}{
		{`(?i)union.*?select.*?from`, "1' UNION\xff SELECT password FROM users--", false},
		{`(?i)<script[^>]*>[\s\S]*?`, "<script\xff>", false},
		{`\B`, "1ſA", false},
		{`(?i)\xc9t\xe9`, "\xe9T\xc9", true},
	} {
		p, err := compileRX(c.pattern)
		if err != nil || p.fast == nil {
			t.Fatalf("%q: RE2 not compiled (%v)", c.pattern, err)
		}
		if p.fast.MatchString(c.value) == p.std.MatchString(c.value) && !(c.wasmOnly && re2CGO) {
			t.Errorf("%q on %q: RE2 and Go's regexp agree; the fallback for it is no longer needed", c.pattern, c.value)
		}
		if m, text, _ := p.pick(c.value); m.MatchString(text) != p.std.MatchString(c.value) {
			t.Errorf("%q on %q: the engine answers like RE2 alone, not like Go's regexp", c.pattern, c.value)
		}
	}
}

// A value that is not UTF-8 goes to RE2 rewritten into the runes Go's
// regexp reads, one U+FFFD per bad byte, so RE2 matches what Go does.
func TestInvalidUTF8ReachesRE2AsGoReadsIt(t *testing.T) {
	for in, want := range map[string]string{
		"UNION\xff SELECT": "UNION\uFFFD SELECT",
		"\xff\xfe":         "\uFFFD\uFFFD", // a run of bad bytes is one U+FFFD each
		"\xe2\x82":         "\uFFFD\uFFFD", // a truncated sequence too
		"caf\xc3\xa9\xc0":  "caf\u00e9\uFFFD",
		"\xef\xbf\xbd\xff": "\uFFFD\uFFFD", // a real U+FFFD stays one
	} {
		if got := runesAsGoReads(in); got != want {
			t.Errorf("runesAsGoReads(%q) = %q, want %q", in, got, want)
		}
	}
	p, err := compileRX(`(?i)union.*?select`)
	if err != nil {
		t.Fatal(err)
	}
	m, text, rewritten := p.pick("1' UNION\xff SELECT")
	if m != p.fast || !rewritten || !m.MatchString(text) {
		t.Errorf("pick = RE2 %v, rewritten %v, text %q: want RE2 over the rewritten value, matching", m == p.fast, rewritten, text)
	}
}

func TestMatchesBytes(t *testing.T) {
	for _, c := range []struct {
		expr string
		want bool
	}{
		{`abc`, false},
		{`\xac\xed\x00\x05`, true},
		{`\x{ac}\x{ed}`, true},
		{`\xc3\xa9`, false}, // the UTF-8 bytes of é
		{`\x5c\x0b`, false},
		{`\x{fffd}`, true}, // Coraza reads the first byte of a braced escape only
		{`\\xff`, true},    // Coraza reads the escape after an escaped backslash too
		{`a\xf`, false},    // too close to the end to be read as an escape
	} {
		if got := matchesBytes(rxFlags + c.expr); got != c.want {
			t.Errorf("matchesBytes(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
}

// TestBinaryPatternKeepsCorazaSemantics: a pattern of raw bytes is matched
// over bytes, as Coraza's binaryregexp operator does.
func TestBinaryPatternKeepsCorazaSemantics(t *testing.T) {
	op, err := newRX(plugintypes.OperatorOptions{Arguments: `\xac\xed\x00\x05`})
	if err != nil {
		t.Fatal(err)
	}
	if !op.Evaluate(&captureTx{}, "\xac\xed\x00\x05t\x00\x04test") {
		t.Error("serialized Java object not matched")
	}
	if op.Evaluate(&captureTx{}, "\xac\xed\x00t") {
		t.Error("partial header matched")
	}
}

func TestInvalidPatternIsAnError(t *testing.T) {
	if _, err := newRX(plugintypes.OperatorOptions{Arguments: `a(`}); err == nil {
		t.Error("a( compiled")
	}
	// RE2 accepts \C (any byte); Go's regexp, and so Coraza, does not.
	if _, err := newRX(plugintypes.OperatorOptions{Arguments: `a\Cb`}); err == nil {
		t.Error(`\C compiled`)
	}
}

// setMinFastLen sets the length threshold for patterns compiled until the
// returned function restores it.
func setMinFastLen(n int) func() {
	old := minFastLen
	minFastLen = n
	return func() { minFastLen = old }
}
