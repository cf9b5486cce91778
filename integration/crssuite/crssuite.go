// Package crssuite reads the CRS regression tests that coraza-coreruleset
// embeds (the CRS version meshwaf ships): the conformance suite runs them
// through Envoy + agent, and the differential bench sends their requests to
// meshwaf and to nginx + ModSecurity. It imports nothing of meshwaf.
package crssuite

import (
	"fmt"
	"io/fs"
	"path"

	crstests "github.com/corazawaf/coraza-coreruleset/v4/tests"
	"github.com/coreruleset/go-ftw/v2/test"
)

// File is one parsed test file and the CRS directory it is in.
type File struct {
	Dir  string // e.g. REQUEST-942-APPLICATION-ATTACK-SQLI
	Test *test.FTWTest
}

// Files parses every test file of the suite, in path order.
func Files() ([]File, error) {
	var files []File
	err := fs.WalkDir(crstests.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".yaml" {
			return err
		}
		raw, err := fs.ReadFile(crstests.FS, p)
		if err != nil {
			return err
		}
		// go-ftw takes the rule id from the first number in the file name
		// when the file has no rule_id (920539.yaml), so it gets the base
		// name: the directory's number would be taken instead.
		ft, err := test.GetTestFromYaml(raw, path.Base(p))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		files = append(files, File{Dir: path.Dir(p), Test: ft})
		return nil
	})
	return files, err
}
