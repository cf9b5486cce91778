package proc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Options are what a child may need beyond its arguments.
type Options struct {
	// Env is added to this process's environment.
	Env []string
	// Dir is the working directory (default: this process's).
	Dir string
	// Output, when set, also receives the child's output as it comes (for
	// a harness that reads the log while the child runs), and is closed,
	// when it is an io.Closer, once the child has exited.
	Output io.Writer
}

// Process is one child program whose output goes to a log file.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// Start starts bin with args. Its output is appended to logPath, after a
// line with the command, so that the log of every run (across restarts)
// is in one file.
func Start(name, logPath, bin string, opts Options, args ...string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if len(opts.Env) > 0 {
		cmd.Env = append(os.Environ(), opts.Env...)
	}
	cmd.Dir = opts.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if opts.Output != nil {
		out := io.MultiWriter(logFile, opts.Output)
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so Stop can signal anything the program
		// spawned (pilot-agent starts Envoy); Pdeathsig kills the child if
		// the test binary dies without calling Stop (killed by its
		// timeout), which would otherwise leave a process bound to a port.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	fmt.Fprintf(logFile, "# %s %s %q\n", time.Now().Format(time.RFC3339Nano), bin, args)
	if len(opts.Env) > 0 {
		fmt.Fprintf(logFile, "# environment plus %q\n", opts.Env)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		if c, ok := opts.Output.(io.Closer); ok {
			c.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Name is the name the child was started under, for messages.
func (p *Process) Name() string { return p.name }

// PID is the child's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// LogPath is the file the child's output goes to.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed once the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is, once the child has exited, why it did not exit with status
// 0 (nil if it did, or if it still runs).
func (p *Process) ExitErr() error {
	select {
	case <-p.done:
		return p.waitErr
	default:
		return nil
	}
}

// Exited reports an error, with the end of the log, if the child is no
// longer running.
func (p *Process) Exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) exited: %v; log %s:\n%s", p.name, p.PID(), p.waitErr, p.logPath, Tail(p.logPath, 30))
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group, waits up to grace, then kills
// it. A clean exit after SIGTERM is not an error; a kill is reported, so
// that a program that ignores SIGTERM is noticed.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", p.name, p.PID(), grace)
}

// Kill ends the process group with SIGKILL, like a crash or an OOM kill,
// and waits until the child has been reaped, so that its ports are free
// when Kill returns.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n lines of a file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// WaitHTTP polls url with client until it answers 200, and fails when the
// child exits first or timeout passes, with the last answer and the end of
// the child's log.
func (p *Process) WaitHTTP(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		if err := p.Exited(); err != nil {
			return fmt.Errorf("%w\nbefore %s answered; last: %s", err, url, last)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %q", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s after %s (last: %s); log %s:\n%s",
				p.name, url, timeout, last, p.logPath, Tail(p.logPath, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
