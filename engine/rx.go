package engine

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	re2 "github.com/wasilibs/go-re2"
	re2latin1 "github.com/wasilibs/go-re2/experimental"
	"rsc.io/binaryregexp"
	binarysyntax "rsc.io/binaryregexp/syntax"
)

// matcher is what the operator needs of a compiled expression. Go's
// regexp, RE2 and binaryregexp all provide it with the same meaning.
type matcher interface {
	MatchString(s string) bool
	FindStringSubmatchIndex(s string) []int
}

// rxPattern is one compiled @rx pattern. It is shared, through Coraza's
// memoizer, by every rule and WAF that uses the same pattern.
type rxPattern struct {
	// std is the pattern compiled as Coraza compiles it. It defines what
	// the operator matches, and it is what runs whenever RE2 may not agree.
	std matcher
	// fast is RE2 compiled from the same expression, or nil when RE2 is not
	// used for this pattern (see compileRX).
	fast *re2.Regexp
	// asciiOnly is set when RE2 agrees with std only on ASCII values. In
	// UTF-8 mode RE2 looks at every byte position, so \B (not a word
	// boundary) matches between two bytes of one UTF-8 character, where
	// Go's regexp never looks. In Latin-1 mode RE2 folds case for ASCII
	// letters only, binaryregexp for é and É too.
	asciiOnly bool
	// bytes is set for a pattern matched over bytes (Latin-1) by both
	// implementations: every byte is a character, so RE2 sees what
	// binaryregexp sees, valid UTF-8 or not.
	bytes bool
	// minFast is the value length from which RE2 runs; shorter values go
	// to Go's regexp. Measured, 0 (RE2 for every value) was fastest.
	minFast int
}

// rx is the @rx operator. Each rule gets its own, over a shared pattern.
type rx struct{ p *rxPattern }

var _ plugintypes.Operator = (*rx)(nil)

// minFastLen is the value length from which RE2 runs (see rxPattern). It
// is a variable so that the side-by-side measurement can compare lengths;
// it is read when a pattern is compiled. With go-re2 v1.13.0 a call into
// RE2 is cheap enough that a threshold only cost CPU.
var minFastLen = 0

func newRX(options plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	expr := rxFlags + options.Arguments
	// The key differs from Coraza's own keys so that a pattern compiled by
	// Coraza's operator (in a WAF compiled before Install) is never handed
	// to this one, or the other way round.
	// The threshold is part of the key only so that the side-by-side
	// measurement can hold WAFs compiled with different thresholds.
	key := fmt.Sprintf("meshwaf/engine/rx:%d:%s", minFastLen, expr)
	if matchesBytes(expr) {
		key = fmt.Sprintf("meshwaf/engine/rx-binary:%d:%s", minFastLen, options.Arguments)
	}
	p, err := memoize(options.Memoizer, key, func() (any, error) {
		return compileRX(options.Arguments)
	})
	if err != nil {
		return nil, err
	}
	return &rx{p: p.(*rxPattern)}, nil
}

// compileRX compiles pattern the way Coraza's @rx does, and with RE2 where
// that is safe.
func compileRX(pattern string) (*rxPattern, error) {
	expr := rxFlags + pattern
	if matchesBytes(expr) {
		// Coraza matches a pattern that spells out bytes which are not
		// UTF-8 with binaryregexp, over bytes, and without its usual
		// flags. RE2's Latin-1 mode reads pattern and value the same way.
		// Several of the CRS's RCE patterns (932xxx) are of this kind.
		std, err := binaryregexp.Compile(pattern)
		if err != nil {
			return nil, err
		}
		p := &rxPattern{std: std, bytes: true, minFast: minFastLen}
		parsed, err := binarysyntax.Parse(pattern, binarysyntax.Perl)
		if err != nil {
			return nil, err // cannot happen: binaryregexp.Compile parsed it
		}
		p.asciiOnly = foldsCase(parsed)
		if fast, err := re2latin1.CompileLatin1(pattern); err == nil && fast.NumSubexp() == std.NumSubexp() {
			p.fast = fast
		}
		return p, nil
	}
	std, err := regexp.Compile(expr)
	if err != nil {
		// The error Coraza would give: a policy valid with stock Coraza
		// is valid with the engine, and the other way round.
		return nil, err
	}
	p := &rxPattern{std: std, minFast: minFastLen}
	parsed, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, err // cannot happen: regexp.Compile parsed it
	}
	p.asciiOnly = hasOp(parsed, syntax.OpNoWordBoundary)
	if fast, err := re2.Compile(expr); err == nil && fast.NumSubexp() == std.NumSubexp() {
		p.fast = fast
	}
	// Otherwise RE2 rejects what Go accepts (RE2's limits differ), and Go's
	// regexp does all the work for this pattern, as in stock Coraza.
	return p, nil
}

// pick chooses the implementation for one value, and the text it reads:
// RE2 only where it is known to agree with Go's regexp. A value that is
// not UTF-8 reaches RE2 rewritten (runesAsGoReads), and RE2 then finds a
// match exactly when Go's regexp finds one in value; its offsets are the
// rewritten text's, so rewritten says captures must come from Go's regexp.
func (p *rxPattern) pick(value string) (m matcher, text string, rewritten bool) {
	switch {
	case p.fast == nil, len(value) < p.minFast:
		return p.std, value, false
	case p.asciiOnly && !isASCII(value):
		return p.std, value, false
	case p.bytes:
		return p.fast, value, false
	case !utf8.ValidString(value):
		return p.fast, runesAsGoReads(value), true
	}
	return p.fast, value, false
}

// runesAsGoReads rewrites s, which is not valid UTF-8, into the valid
// UTF-8 text of the runes Go's regexp reads in it: each byte that does not
// start a valid encoding is one U+FFFD, as utf8.DecodeRuneInString decodes
// it. RE2 in UTF-8 mode would skip such bytes instead, so that
// `UNION\xff SELECT` would no longer be SQL to it; over the rewritten text
// it reads what Go's regexp reads, rune for rune. (strings.ToValidUTF8 is
// not the same: it folds a run of bad bytes into one U+FFFD.)
func runesAsGoReads(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// Evaluate matches value, and when the rule captures, sets TX:0 to TX:8
// the way Coraza's operator does: the whole match, then each group, empty
// for a group that took no part in the match.
//
// Whether there is a match is asked first even when the rule captures:
// most values match nothing, and with libre2 a plain match is one call
// into C where finding the groups is three (the group array is allocated
// and freed in C memory).
func (o *rx) Evaluate(tx plugintypes.TransactionState, value string) bool {
	m, text, rewritten := o.p.pick(value)
	if !m.MatchString(text) {
		return false
	}
	if !tx.Capturing() {
		return true
	}
	if rewritten {
		// RE2 decided there is a match; Go's regexp says where it is in
		// value.
		m, text = o.p.std, value
	}
	idx := m.FindStringSubmatchIndex(text)
	if idx == nil {
		return false
	}
	for i := 0; i < len(idx)/2 && i < 9; i++ {
		if idx[2*i] < 0 {
			tx.CaptureField(i, "")
			continue
		}
		tx.CaptureField(i, value[idx[2*i]:idx[2*i+1]])
	}
	return true
}

// memoize shares one compiled artifact per key through Coraza's memoizer,
// which also releases it when the last WAF using it is closed.
func memoize(m plugintypes.Memoizer, key string, fn func() (any, error)) (any, error) {
	if m == nil {
		return fn()
	}
	return m.Do(key, fn)
}

func hasOp(re *syntax.Regexp, op syntax.Op) bool {
	if re.Op == op {
		return true
	}
	for _, sub := range re.Sub {
		if hasOp(sub, op) {
			return true
		}
	}
	return false
}

func foldsCase(re *binarysyntax.Regexp) bool {
	if re.Flags&binarysyntax.FoldCase != 0 {
		return true
	}
	for _, sub := range re.Sub {
		if foldsCase(sub) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// matchesBytes reports whether expr is one Coraza hands to binaryregexp:
// its \xNN and \x{NN} escapes, read as bytes together with the rest of
// the pattern, do not form valid UTF-8. Coraza decides this by the same
// rule, including leaving an escape within the last three characters of
// the expression as text, and the operators must agree on it.
func matchesBytes(expr string) bool {
	var decoded []byte
	for i := 0; i < len(expr); i++ {
		if expr[i] != '\\' {
			decoded = append(decoded, expr[i])
			continue
		}
		if i+3 >= len(expr) {
			decoded = append(decoded, expr[i:]...)
			break
		}
		if expr[i+1] != 'x' {
			decoded = append(decoded, '\\')
			continue
		}
		escape, width := expr[i:i+4], 3
		if rest := expr[i:]; len(rest) >= 6 && rest[2] == '{' {
			if end := strings.IndexByte(rest, '}'); end >= 0 {
				escape, width = `\x`+rest[3:end], end
			}
		}
		r, multibyte, _, err := strconv.UnquoteChar(escape, 0)
		if err != nil || multibyte {
			decoded = append(decoded, '\\')
			continue
		}
		decoded = append(decoded, byte(r))
		i += width
	}
	return !utf8.Valid(decoded)
}
