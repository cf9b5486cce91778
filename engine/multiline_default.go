//go:build !coraza.rule.no_regex_multiline

package engine

// rxFlags are the flags Coraza's own @rx operator puts in front of every
// pattern: dot matches newline (ModSecurity's behaviour) and, unless Coraza
// is built with coraza.rule.no_regex_multiline, ^ and $ match at line
// breaks. The same build tag selects the same flags here, so that both
// operators compile the same expression.
const rxFlags = "(?sm)"
