package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// WorkerEnv, set in the environment of the bench's own test binary, makes
// it an in-process worker (RunWorker) instead of running tests.
const WorkerEnv = "MESHWAF_BENCH_WORKER"

// The in-process baseline (a) runs in a worker process of its own, so that
// it is measured exactly like the agent: a separate Go process with the
// same runtime defaults, its CPU read from /proc, nothing else in its heap
// or on its threads. Measured in the harness's own process, the baseline
// shared its garbage collector and scheduler with the load generator and
// two HTTP backends, and came out slower than the agent doing the same
// work plus gRPC.

// batch asks the worker to inspect Count requests of one scenario.
type batch struct {
	Level    int32 `json:"level"`
	Scenario int   `json:"scenario"` // index into Scenarios()
	Count    int   `json:"count"`
	Seq      int   `json:"seq"`
	// InFlight inspects with this many goroutines sharing the WAF, each
	// taking the next request as soon as its last is done, as the agent
	// inspects concurrent requests (the loaded measurement, load.go); 0 or
	// 1 inspects one request after another.
	InFlight int `json:"inFlight,omitempty"`
}

// batches has the worker inspect batches shaped like shape (level,
// scenario, requests in flight), each numbered and sized by its caller.
func (w *worker) batches(shape batch) batchFunc {
	return func(seq, k int) (latencies, tally, error) {
		b := shape
		b.Seq, b.Count = seq, k
		res, err := w.run(b)
		return res.Latencies, tally{blocked: res.Blocked}, err
	}
}

// batchResult is the worker's answer: wall time per request, and how many
// were blocked.
type batchResult struct {
	Latencies []time.Duration `json:"latencies"`
	Blocked   int             `json:"blocked"`
	Error     string          `json:"error,omitempty"`
}

// RunWorker serves batches from in to out until in closes. It compiles one
// WAF per paranoia level on first use.
func RunWorker(in io.Reader, out io.Writer) error {
	wafs := map[int32]inProcess{}
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	for {
		var b batch
		if err := dec.Decode(&b); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		res := runBatch(wafs, b)
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
}

func runBatch(wafs map[int32]inProcess, b batch) batchResult {
	local, ok := wafs[b.Level]
	if !ok {
		waf, err := compileWAF(hostPolicy(b.Level, plHost(b.Level)))
		if err != nil {
			return batchResult{Error: err.Error()}
		}
		local = inProcess{waf: waf, host: plHost(b.Level)}
		wafs[b.Level] = local
	}
	scenarios := Scenarios()
	if b.Scenario < 0 || b.Scenario >= len(scenarios) {
		return batchResult{Error: fmt.Sprintf("no scenario %d", b.Scenario)}
	}
	sc := scenarios[b.Scenario]
	inspect := func(seq int) (bool, error) { return local.send(sc, seq) }
	lat, t, err := closedLoop(b.InFlight, inspect)(b.Seq, b.Count)
	if err != nil {
		return batchResult{Error: err.Error()}
	}
	return batchResult{Latencies: lat, Blocked: t.blocked}
}

// worker is the parent's handle on a worker process.
type worker struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *json.Decoder
	enc *json.Encoder
}

// startWorker re-executes this test binary as a worker, with the agent's
// environment added to this process's environment.
func startWorker() (*worker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The agent's runtime settings, so that (a) runs Go as the agent does.
	agentEnv, err := stack.AgentEnvironment()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), WorkerEnv+"=1"), agentEnv...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &worker{cmd: cmd, in: in, out: json.NewDecoder(bufio.NewReader(out)), enc: json.NewEncoder(in)}, nil
}

func (w *worker) pid() int { return w.cmd.Process.Pid }

func (w *worker) run(b batch) (batchResult, error) {
	if err := w.enc.Encode(b); err != nil {
		return batchResult{}, fmt.Errorf("in-process worker: %w", err)
	}
	var res batchResult
	if err := w.out.Decode(&res); err != nil {
		return batchResult{}, fmt.Errorf("in-process worker: %w", err)
	}
	if res.Error != "" {
		return res, fmt.Errorf("in-process worker: %s", res.Error)
	}
	return res, nil
}

// stop closes the worker's input, which ends it.
func (w *worker) stop() error {
	w.in.Close()
	return w.cmd.Wait()
}
