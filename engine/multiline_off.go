//go:build coraza.rule.no_regex_multiline

package engine

// rxFlags: see multiline_default.go.
const rxFlags = "(?s)"
