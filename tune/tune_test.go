package tune

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

const auditLog = `{"policy":"shop/shop","host":"shop.example.com","path":"/comments","action":"blocked","anomaly_score":5,"rules":[{"id":942260,"msg":"SQL auth bypass","severity":"critical","targets":["ARGS:comment"]},{"id":949110,"msg":"Inbound Anomaly Score Exceeded","targets":["TX:blocking_inbound_anomaly_score"]},{"id":980170,"msg":"Anomaly Scores"}]}
{"policy":"shop/shop","host":"shop.example.com","path":"/comments?x=1","action":"blocked","anomaly_score":8,"rules":[{"id":942260,"msg":"SQL auth bypass","severity":"critical","targets":["ARGS:comment"]},{"id":942430,"msg":"special characters","severity":"warning","targets":["ARGS:comment"]}]}
{"policy":"shop/shop","host":"shop.example.com","path":"/search?q=x","action":"blocked","anomaly_score":10,"rules":[{"id":942100,"msg":"libinjection","severity":"critical","targets":["ARGS:q"]},{"id":942260,"msg":"SQL auth bypass","severity":"critical","targets":["ARGS:q"]}]}
{"policy":"api/api","host":"api.example.com","path":"/orders","action":"detected","anomaly_score":3,"rules":[{"id":920320,"msg":"Missing User Agent Header","severity":"notice","targets":["REQUEST_HEADERS"]}]}
{"policy":"shop/shop","host":"shop.example.com","path":"/","action":"allowed","anomaly_score":0,"rules":[]}
{"policy":"shop/shop","host":"shop.example.com","path":"/shadowed","action":"blocked","shadow":true,"anomaly_score":5,"rules":[{"id":942999,"msg":"shadow only","severity":"critical","targets":["ARGS:x"]}]}
`

// Detections group by policy, rule, path (without query) and variable;
// score-keeping rules are not findings; allowed lines and a shadow's lines
// count for nothing.
func TestFindings(t *testing.T) {
	lines, err := ReadLines(strings.NewReader(auditLog))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range Findings(lines) {
		got = append(got, f.Policy+" "+f.Path+" "+f.Target+" "+strconv.Itoa(f.RuleID)+" "+strconv.Itoa(f.Lines)+"/"+strconv.Itoa(f.Blocked))
	}
	want := []string{
		"api/api /orders REQUEST_HEADERS 920320 1/0",
		"shop/shop /comments ARGS:comment 942260 2/2",
		"shop/shop /comments ARGS:comment 942430 1/1",
		"shop/shop /search ARGS:q 942100 1/1",
		"shop/shop /search ARGS:q 942260 1/1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Excluding the look-alikes' findings lets their lines pass in the replay
// and leaves the attack on /search blocked.
func TestExclusionsAndProjection(t *testing.T) {
	lines, err := ReadLines(strings.NewReader(auditLog))
	if err != nil {
		t.Fatal(err)
	}
	var comments []Finding
	for _, f := range Findings(lines) {
		if f.Path == "/comments" {
			comments = append(comments, f)
		}
	}
	ex := Exclusions(comments)
	if len(ex) != 1 || !slices.Equal(ex[0].RuleIDs, []string{"942260", "942430"}) || !slices.Equal(ex[0].Paths, []string{"/comments"}) ||
		!slices.Equal(ex[0].Targets, []string{"ARGS:comment"}) {
		t.Errorf("exclusions: %+v", ex)
	}
	rep := Project(lines, comments, nil)
	if rep.Blocked != 3 || rep.StillBlocked != 1 || rep.Detected != 1 || rep.StillDetected != 1 {
		t.Errorf("replay: %+v; want 3 blocked of which 1 still, 1 detection left", rep)
	}
	if rep := Project(lines, comments, map[string]int{"shop/shop": 20}); rep.StillBlocked != 0 {
		t.Errorf("with threshold 20 nothing stays blocked, got %+v", rep)
	}
}

// The report is YAML: a known policy whole with its exclusions first, an
// unknown one as the exclusions to add; a bad line is an error.
func TestWrite(t *testing.T) {
	lines, err := ReadLines(strings.NewReader(auditLog))
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]v1alpha1.WAFPolicySpec{"shop/shop": {Exclusions: []v1alpha1.Exclusion{{RuleIDs: []string{"920350"}}}}}
	var out bytes.Buffer
	if err := Write(&out, lines, specs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: WAFPolicy", "name: shop", "- \"920350\"", "- /search", "add to the spec.exclusions of WAFPolicy api/api",
		"# with these exclusions, replaying the log: 0 of 3 blocked requests still blocked"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := ReadLines(strings.NewReader("{\"policy\":\"a/b\"}\nnot json\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad line: %v", err)
	}
}
