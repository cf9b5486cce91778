package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// knownDifferencesFile lists the differences between meshwaf and
// ModSecurity that were looked into, with the reason and, where the cause
// is upstream, a reference: data rather than code, to be reviewed on its
// own, like the conformance suite's ignore list.
const knownDifferencesFile = "differential-known.yaml"

// knownDifference is one reason shared by one or more probes.
type knownDifference struct {
	// Probes are probe IDs or path.Match patterns of them
	// (payloads/path-traversal.deep_traversal.txt:*).
	Probes []string `json:"probes"`
	// Levels the reason holds at; empty means every level.
	Levels []int32 `json:"levels,omitempty"`
	// Cause is where the difference comes from: envoy, coraza, modsecurity
	// (ModSecurity or nginx reads the request in a way the CRS does not
	// intend) or meshwaf (ours, not fixed yet).
	Cause    string `json:"cause"`
	Reason   string `json:"reason"`
	Upstream string `json:"upstream,omitempty"`
}

var differenceCauses = []string{"envoy", "coraza", "modsecurity", "meshwaf"}

type knownDifferences []knownDifference

func loadKnownDifferences(file string) (knownDifferences, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var l struct {
		Differences knownDifferences `json:"differences"`
	}
	if err := yaml.UnmarshalStrict(raw, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for i, d := range l.Differences {
		var errs []error
		if len(d.Probes) == 0 {
			errs = append(errs, errors.New("no probes"))
		}
		for _, p := range d.Probes {
			if _, err := path.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("probe pattern %q: %w", p, err))
			}
		}
		if !slices.Contains(differenceCauses, d.Cause) {
			errs = append(errs, fmt.Errorf("cause %q is none of %v", d.Cause, differenceCauses))
		}
		if strings.TrimSpace(d.Reason) == "" {
			errs = append(errs, errors.New("no reason"))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", file, i, err)
		}
	}
	return l.Differences, nil
}

// covers says whether d explains probe id at level pl.
func (d *knownDifference) covers(id string, pl int32) bool {
	if len(d.Levels) > 0 && !slices.Contains(d.Levels, pl) {
		return false
	}
	return slices.ContainsFunc(d.Probes, func(p string) bool {
		ok, _ := path.Match(p, id)
		return ok
	})
}

// match sets each disagreeing result's Known to the first entry covering
// it and returns the entries that matched no disagreement although the run
// sent one of their probes (they agree now: the entry is stale).
func (k knownDifferences) match(results []DiffResult) (stale []knownDifference) {
	used := make([]bool, len(k))
	sent := make([]bool, len(k))
	for i := range results {
		r := &results[i]
		for j := range k {
			if !k[j].covers(r.Probe, r.Level) {
				continue
			}
			sent[j] = true
			if r.Disagree() && r.Known == nil {
				r.Known, used[j] = &k[j], true
			}
		}
	}
	for j := range k {
		if sent[j] && !used[j] {
			stale = append(stale, k[j])
		}
	}
	return stale
}

// peerAuditRules reads ModSecurity's JSON audit log (modsecRules) into
// the rule ids of each record, keyed by the probe header's value.
func peerAuditRules(file string) (map[string][]string, error) {
	f, err := os.Open(file)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil // it blocked nothing
		}
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	dec := json.NewDecoder(f)
	for {
		var rec struct {
			Transaction struct {
				Request struct {
					Headers map[string]string `json:"headers"`
				} `json:"request"`
				Messages []struct {
					Details struct {
						RuleID string `json:"ruleId"`
					} `json:"details"`
				} `json:"messages"`
			} `json:"transaction"`
		}
		if err := dec.Decode(&rec); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var mark string
		for name, v := range rec.Transaction.Request.Headers {
			if strings.EqualFold(name, probeHeader) {
				mark = v
			}
		}
		for _, m := range rec.Transaction.Messages {
			if id := m.Details.RuleID; id != "" && !slices.Contains(out[mark], id) {
				out[mark] = append(out[mark], id)
			}
		}
	}
}
