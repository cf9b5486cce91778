package policytest

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/meshwaf/meshwaf/tune"
)

// Listed is one request of a list, with where it came from.
type Listed struct {
	Line    int
	Request Request
	// Was is the action an audit line recorded for it (replays only).
	Was string
}

// ParseRequestFile reads requests written one per line as curl's
// arguments, quoted as a shell would read them ('single', "double", \x);
// empty lines and lines starting with # are skipped, and a leading "curl"
// is allowed.
func ParseRequestFile(r io.Reader) ([]Listed, error) {
	var out []Listed
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		words, err := shellWords(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(words) > 0 && words[0] == "curl" {
			words = words[1:]
		}
		req, err := ParseCurl(words)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, Listed{Line: n, Request: req})
	}
	return out, sc.Err()
}

// shellWords splits a line into words as a POSIX shell would, without
// expansions.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// ParseAuditReplay turns the agent's audit lines into the requests they
// record: method, host and path with its query. An audit line holds no
// headers or body, so a replay judges what the request line alone
// triggers; Was is the action the line recorded. Lines of a shadow are
// skipped.
func ParseAuditReplay(r io.Reader) ([]Listed, error) {
	lines, err := tune.ReadLines(r)
	if err != nil {
		return nil, err
	}
	var out []Listed
	for i, l := range lines {
		if l.Shadow {
			continue
		}
		if l.Host == "" || l.Path == "" {
			return nil, fmt.Errorf("audit record %d has no host or path", i+1)
		}
		req := Request{Method: cmp.Or(strings.ToUpper(l.Method), "GET"), Scheme: "http", Authority: l.Host, Target: l.Path}
		req.setDefault("User-Agent", curlUserAgent)
		req.setDefault("Accept", "*/*")
		out = append(out, Listed{Line: l.Number, Request: req, Was: l.Action})
	}
	return out, nil
}
