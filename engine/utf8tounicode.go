package engine

import "strconv"

// utf8ToUnicode is the engine's utf8toUnicode transformation: it writes
// every multi-byte UTF-8 sequence as %uXXXX (its code point, at least four
// hex digits), which a later urlDecodeUni turns into the code point's low
// byte. It differs from Coraza's, which decodes with Go's UTF-8 rules, in
// what it does with bytes that are not valid UTF-8, and there it does what
// libmodsecurity, the CRS's reference engine, does:
//
//   - an overlong sequence (\xc0\xaf for '/', \xc0\xae for '.') is written
//     as the code point it spells (%u002f), so that the CRS sees the
//     character a lenient decoder in the application would see. Coraza
//     writes U+FFFD twice, which lets `..%c0%af` past rule 930110
//     (coreruleset/coreruleset#4189, #4612);
//   - a lead byte without its continuation bytes is dropped (`%c0.%c0./`
//     reads as `../`), as libmodsecurity drops it;
//   - any other byte (a lone continuation byte, 0xf8–0xff) stays as it is.
//
// Valid UTF-8 gives what Coraza gives. integration/bench/differential-known.yaml and
// docs/decisions.md ("Overlong UTF-8") have the requests that showed it.
func utf8ToUnicode(s string) (string, bool, error) {
	first := -1
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			first = i
			break
		}
	}
	if first < 0 {
		return s, false, nil
	}
	out := make([]byte, first, len(s)+16)
	copy(out, s[:first])
	changed := false
	for i := first; i < len(s); {
		c := s[i]
		n, bits := sequenceLength(c)
		if n <= 1 { // ASCII, or a byte that starts no sequence: kept
			out = append(out, c)
			i++
			continue
		}
		cp := rune(c & bits)
		valid := i+n <= len(s)
		for k := 1; valid && k < n; k++ {
			if s[i+k]&0xc0 != 0x80 {
				valid = false
			} else {
				cp = cp<<6 | rune(s[i+k]&0x3f)
			}
		}
		changed = true
		if !valid {
			i++ // a lead byte without its continuation: dropped
			continue
		}
		hex := strconv.FormatInt(int64(cp), 16)
		out = append(out, '%', 'u')
		for range 4 - len(hex) {
			out = append(out, '0')
		}
		out = append(out, hex...)
		i += n
	}
	if !changed {
		return s, false, nil
	}
	return string(out), true, nil
}

// sequenceLength is how many bytes a UTF-8 sequence starting with c has
// (1 for ASCII, 0 for a byte that starts none) and the mask of c's bits
// that belong to the code point.
func sequenceLength(c byte) (int, byte) {
	switch {
	case c < 0x80:
		return 1, 0x7f
	case c&0xe0 == 0xc0:
		return 2, 0x1f
	case c&0xf0 == 0xe0:
		return 3, 0x0f
	case c&0xf8 == 0xf0:
		return 4, 0x07
	}
	return 0, 0
}
