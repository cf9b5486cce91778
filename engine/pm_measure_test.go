package engine

import (
	"bufio"
	"bytes"
	"io/fs"
	"path"
	"strings"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	ahocorasick "github.com/wasilibs/go-aho-corasick"
)

// The @pm lever, measured and not kept (docs/decisions.md): @pm and
// @pmFromFile on go-aho-corasick (Rust's aho-corasick in WebAssembly, run
// by wazero) instead of Coraza's pure-Go Aho-Corasick. It lives in a test
// file so that the measurement can be repeated; TestMeasureCPU installs it
// last when MESHWAF_ENGINE_PM=1.

type acPM struct{ m ahocorasick.AhoCorasick }

func (o *acPM) Evaluate(tx plugintypes.TransactionState, value string) bool {
	if !tx.Capturing() {
		return len(o.m.FindN(value, 1)) > 0
	}
	found := o.m.FindN(value, 10)
	for i, m := range found {
		tx.CaptureField(i, value[m.Start():m.End()])
	}
	return len(found) > 0
}

// newACPM builds a matcher over the same lowercased dictionary Coraza
// builds, with the same options (ASCII case-insensitive, leftmost longest).
func newACPM(dict []string, key string, m plugintypes.Memoizer) (plugintypes.Operator, error) {
	built, err := memoize(m, "meshwaf/engine/pm:"+key, func() (any, error) {
		b := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
			AsciiCaseInsensitive: true,
			MatchKind:            ahocorasick.LeftMostLongestMatch,
			DFA:                  true,
		})
		return b.Build(dict), nil
	})
	if err != nil {
		return nil, err
	}
	return &acPM{m: built.(ahocorasick.AhoCorasick)}, nil
}

func installACPM() {
	plugins.RegisterOperator("pm", func(o plugintypes.OperatorOptions) (plugintypes.Operator, error) {
		data := strings.ToLower(o.Arguments)
		return newACPM(strings.Split(data, " "), data, o.Memoizer)
	})
	fromFile := func(o plugintypes.OperatorOptions) (plugintypes.Operator, error) {
		var data []byte
		var err error = fs.ErrNotExist
		for _, dir := range o.Path {
			if data, err = fs.ReadFile(o.Root, path.Join(dir, o.Arguments)); err == nil {
				break
			}
		}
		if err != nil {
			return nil, err
		}
		var dict []string
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && l[0] != '#' {
				dict = append(dict, strings.ToLower(l))
			}
		}
		return newACPM(dict, strings.Join(o.Path, ",")+o.Arguments, o.Memoizer)
	}
	plugins.RegisterOperator("pmFromFile", fromFile)
	plugins.RegisterOperator("pmf", fromFile)
}
