package stack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is one child program whose output goes to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// startProcess starts bin with this process's environment plus env.
func startProcess(name, logPath, bin string, env []string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so Stop can signal anything the program
		// spawned; Pdeathsig kills the child if this process dies without
		// calling Stop (a test binary killed by its timeout), which would
		// otherwise leave an Envoy bound to a port.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	fmt.Fprintf(logFile, "# %s %q\n", bin, args)
	if len(env) > 0 {
		fmt.Fprintf(logFile, "# environment plus %q\n", env)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports an error if the process is no longer running.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s (pid %d) exited: %v; log %s:\n%s", p.name, p.pid(), p.waitErr, p.logPath, Tail(p.logPath, 30))
	default:
		return nil
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then kills it.
// A clean exit after SIGTERM is not an error; a kill is reported so that a
// program that ignores SIGTERM is noticed.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %s and was killed", p.name, p.pid(), grace)
}

// kill ends the process group with SIGKILL and waits until the process has
// been reaped, so that its ports are free when kill returns.
func (p *process) kill() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n lines of a file, for error messages (the harnesses
// that start processes of their own use it too).
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

var errNotRunning = errors.New("not running")
