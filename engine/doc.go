// Package engine makes Coraza's rule operators faster without changing
// what they match, and makes Coraza read what the CRS's reference engine
// reads where they differ. Install replaces Coraza's @rx operator with one
// that runs RE2 (github.com/wasilibs/go-re2) where RE2 and Go's regexp are known to
// agree, and Go's regexp, compiled from the same pattern with the same flags,
// everywhere else: for values that are not valid UTF-8 (RE2 skips invalid
// bytes, which would let `UNION\xff SELECT` through) and where a pattern's
// meaning differs between the two (\B on non-ASCII values, case folding of
// Latin-1 letters). CRS is the Core Rule Set's filesystem without the
// logdata actions Coraza would expand on every rule evaluation.
// docs/decisions.md ("A faster engine") has the numbers.
//
// Install also replaces the utf8toUnicode transformation with one that
// reads overlong and broken UTF-8 as libmodsecurity does, so that the CRS
// sees `..%c0%af` as the `../` a lenient decoder would (utf8tounicode.go;
// docs/decisions.md, "Overlong UTF-8").
//
// Operators are registered in Coraza's process-wide plugin registry, so
// Install affects every WAF compiled after it, in the whole process. A WAF
// compiled before keeps the operators it was compiled with.
//
// engine imports Coraza's plugin API, the coraza-coreruleset module, go-re2
// and the standard library. It
// must not import agent, seclang or anything else of meshwaf: it is a
// library the agent uses, not part of the agent. Only its measurement test
// renders policies with seclang, to compile what the agent compiles.
package engine
