package bench

import "testing"

func TestParsePerfStat(t *testing.T) {
	tests := map[string]struct {
		csv  string
		want counters
	}{
		"counts divided by requests": {
			csv:  "2000,,context-switches,5008160,100.00,,\n10,,cpu-migrations,5008160,100.00,,\n30000,,raw_syscalls:sys_enter,5008160,100.00,,\n",
			want: counters{"context-switches": 20, "cpu-migrations": 0.1, "raw_syscalls:sys_enter": 300},
		},
		"not counted is left out": {
			csv:  "<not counted>,,context-switches,0,100.00,,\n40,,cpu-migrations,5008160,100.00,,\n",
			want: counters{"cpu-migrations": 0.4},
		},
		"no counts at all": {csv: "perf: no permission\n", want: nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := parsePerfStat(tt.csv, 100)
			if len(got) != len(tt.want) {
				t.Fatalf("parsePerfStat = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}
