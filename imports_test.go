package meshwaf_test

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// module is the import path every meshwaf package starts with.
const module = "github.com/meshwaf/meshwaf"

// The import rules are the table "Packages and who may import whom" of
// docs/architecture.md: every package of the module (tests aside) must
// have a row, and none may depend, directly or through others, on a package
// its row forbids. `go list -deps` says what each depends on. A row's
// third column is one of: "—" (no rule), a list of `import/paths`
// (meshwaf's relative to the module), "any meshwaf package", or "any
// meshwaf package but `a`, `b`". A first-column path ending in /... covers
// the packages under it.
func TestImportRules(t *testing.T) {
	rules, err := readImportRules("docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	deps, err := moduleDeps()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range slices.Sorted(maps.Keys(deps)) {
		r := rules.find(pkg)
		if r == nil {
			t.Errorf("%s has no row in docs/architecture.md's package table", strings.TrimPrefix(pkg, module+"/"))
			continue
		}
		for _, dep := range deps[pkg] {
			if r.forbids(pkg, dep) {
				t.Errorf("%s imports %s (directly or through another package), which its row in docs/architecture.md forbids",
					short(pkg), short(dep))
			}
		}
	}
	for _, r := range rules {
		if !r.matchedAny(deps) {
			t.Errorf("docs/architecture.md has a row for %v, which is no package of the module", r.packages)
		}
	}
}

// importRule is one row of the table.
type importRule struct {
	packages   []string // module-relative; "x/..." covers x and below
	anyButFor  []string // with anyMeshwaf: allowed meshwaf packages
	forbidden  []string // import paths, module-relative for meshwaf's
	anyMeshwaf bool
}

type importRules []*importRule

var backticked = regexp.MustCompile("`([^`]+)`")

func readImportRules(path string) (importRules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rules importRules
	inTable := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inTable = line == "## Packages and who may import whom"
			continue
		case !inTable || !strings.HasPrefix(line, "| `"):
			continue
		}
		cols := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cols) != 3 {
			return nil, fmt.Errorf("%s: row %q has %d columns, want 3", path, line, len(cols))
		}
		r := &importRule{packages: unquote(cols[0])}
		switch rule := strings.TrimSpace(cols[2]); {
		case rule == "—":
		case strings.HasPrefix(rule, "any meshwaf package"):
			r.anyMeshwaf, r.anyButFor = true, unquote(rule)
		default:
			if r.forbidden = unquote(rule); len(r.forbidden) == 0 {
				return nil, fmt.Errorf("%s: row %q: the rule names no `package`", path, line)
			}
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: no package table", path)
	}
	return rules, sc.Err()
}

func unquote(s string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// covers says whether pattern (module-relative, maybe with /...) names pkg.
func covers(pattern, pkg string) bool {
	rel := strings.TrimPrefix(pkg, module+"/")
	if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == tree || strings.HasPrefix(rel, tree+"/")
	}
	return rel == pattern
}

// find is the row of pkg: an exact row first, else the narrowest tree.
func (rs importRules) find(pkg string) *importRule {
	var best *importRule
	bestLen := -1
	for _, r := range rs {
		for _, p := range r.packages {
			if !covers(p, pkg) {
				continue
			}
			n := len(p)
			if !strings.HasSuffix(p, "/...") {
				n += 1 << 20 // an exact name beats any tree
			}
			if n > bestLen {
				best, bestLen = r, n
			}
		}
	}
	return best
}

func (r *importRule) forbids(pkg, dep string) bool {
	if r.anyMeshwaf {
		if !strings.HasPrefix(dep, module+"/") || dep == pkg {
			return false
		}
		return !slices.ContainsFunc(r.anyButFor, func(p string) bool { return covers(p, dep) })
	}
	for _, f := range r.forbidden {
		if covers(f, dep) || dep == f || strings.HasPrefix(dep, f+"/") {
			return true
		}
	}
	return false
}

func (r *importRule) matchedAny(deps map[string][]string) bool {
	for pkg := range deps {
		for _, p := range r.packages {
			if covers(p, pkg) {
				return true
			}
		}
	}
	return false
}

// moduleDeps runs go list -deps over the module: for every meshwaf
// package, everything it depends on (tests excluded).
func moduleDeps() (map[string][]string, error) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("go list: %v: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("go list: %w", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[0] != module {
			deps[fields[0]] = fields[1:]
		}
	}
	return deps, nil
}

func short(pkg string) string { return strings.TrimPrefix(pkg, module+"/") }
