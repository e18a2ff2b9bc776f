// Package dyno runs a container image the way a Heroku dyno does, minus the
// isolation: it unpacks the image's filesystem into a directory, picks a
// port, and runs the image's entrypoint with PORT set. Tests use it to prove
// that an image herokunix pushed would actually serve on Heroku, and the
// local default environment uses it to stand in for Heroku's runtime.
//
// Nothing is chrooted or namespaced, so this needs no privileges. The price
// is that the program runs on the host: the entrypoint is found inside the
// unpacked tree, but the paths the program itself opens (a dynamic loader,
// store paths baked into it) resolve against the host's filesystem. Static
// binaries, such as the test fixtures' server, behave as they would in a dyno.
package dyno

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

const (
	// stopGrace is how long Stop waits after SIGTERM before SIGKILL. Heroku
	// gives 30 seconds; tests should not wait that long for a server that
	// ignores SIGTERM.
	stopGrace = 5 * time.Second
	// readyBound caps WaitReady when ctx has no deadline, so a server that
	// never answers fails the caller instead of hanging it.
	readyBound = time.Minute
	// outputCap bounds the captured output: it is for error messages, and a
	// chatty long-running dyno must not grow memory without limit.
	outputCap = 64 << 10
	// maxSymlinkHops matches Linux's limit, so a symlink loop in an image
	// fails the same way it would in a real container.
	maxSymlinkHops = 40
)

// Dyno is one running process of an image.
type Dyno struct {
	cmd     *exec.Cmd
	url     string
	root    string
	out     *tailBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	mu      sync.Mutex
	stopped bool // Stop or ctx ended the process, so its death is expected
}

// Start unpacks img's filesystem into dir (which should be empty) and runs its
// Entrypoint+Cmd there with the image's Env, then env, then PORT set to a free
// loopback port. Like a dyno's, the environment is only these: nothing is
// inherited from the caller's. The process is killed when ctx ends, as with
// exec.CommandContext; call Stop to end it earlier.
func Start(ctx context.Context, img v1.Image, dir string, env []string) (*Dyno, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	if err := unpack(ctx, img, dir); err != nil {
		return nil, fmt.Errorf("unpacking the image into %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	argv := slices.Concat(cf.Config.Entrypoint, cf.Config.Cmd)
	if len(argv) == 0 {
		return nil, errors.New("the image has neither Entrypoint nor Cmd")
	}
	workdir := cf.Config.WorkingDir
	if workdir == "" {
		workdir = "/"
	}
	prog, err := findProgram(root, argv[0], workdir, lookupEnv(cf.Config.Env, "PATH"))
	if err != nil {
		return nil, err
	}
	wd, err := resolve(root, workdir)
	if err != nil {
		return nil, fmt.Errorf("working directory %s: %w", workdir, err)
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &Dyno{
		url:  "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		root: dir,
		out:  &tailBuffer{},
		done: make(chan struct{}),
	}
	cmd := exec.CommandContext(ctx, filepath.Join(dir, prog), argv[1:]...)
	cmd.Args[0] = argv[0] // what the program sees as its name, as in the image
	cmd.Dir = filepath.Join(dir, wd)
	cmd.Env = slices.Concat(cf.Config.Env, env, []string{"PORT=" + strconv.Itoa(port)})
	cmd.Stdout, cmd.Stderr = d.out, d.out
	// A process group, so that Stop and ctx also end whatever the
	// entrypoint started (a shell script's children, for one).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		d.mu.Lock()
		d.stopped = true
		d.mu.Unlock()
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	d.cmd = cmd
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// Done is closed when the process has exited, on its own or stopped.
func (d *Dyno) Done() <-chan struct{} { return d.done }

// Err is how the process exited (nil: status 0), once Done is closed.
func (d *Dyno) Err() error {
	<-d.done
	return d.waitErr
}

// Root is the directory the image was unpacked into.
func (d *Dyno) Root() string { return d.root }

// URL is the dyno's base URL, http://127.0.0.1:<PORT>.
func (d *Dyno) URL() string { return d.url }

// Output is what the process has written to stdout and stderr so far (the
// last 64 KiB).
func (d *Dyno) Output() string { return d.out.String() }

// WaitReady polls GET / until the process answers with any HTTP status,
// exits, or ctx ends (at most a minute if ctx has no deadline). Its errors
// carry the process's output, which usually says why.
func (d *Dyno) WaitReady(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyBound)
		defer cancel()
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("the dyno exited before answering on %s: %v\noutput:\n%s", d.url, d.waitErr, d.Output())
		case <-ctx.Done():
			return fmt.Errorf("the dyno did not answer on %s: %w (last error: %v)\noutput:\n%s", d.url, ctx.Err(), err, d.Output())
		case <-tick.C:
		}
	}
}

// Get requests path from the dyno, as a router would, and returns the
// answer's body (it must be 200 OK).
func (d *Dyno) Get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return string(body), nil
}

// Stop ends the dyno as Heroku does, SIGTERM and then SIGKILL, and waits for
// it. It returns an error only if the process had already failed on its own
// (with its output), not for the signal Stop sent or a kill because ctx ended.
func (d *Dyno) Stop() error {
	d.mu.Lock()
	select {
	case <-d.done:
	default:
		d.stopped = true
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	}
	d.mu.Unlock()

	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case <-d.done:
	case <-grace.C:
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waitErr == nil || d.stopped {
		return nil
	}
	return fmt.Errorf("the dyno had failed: %w\noutput:\n%s", d.waitErr, d.Output())
}

// unpack writes the image's flattened filesystem into dir. Names are confined
// to dir: a ".." component is refused, and writing through a symlink that
// leads out of dir fails (os.Root). Symlinks themselves are kept as they are,
// absolute targets included, since they are resolved inside dir later.
func unpack(ctx context.Context, img v1.Image, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	rc := mutate.Extract(img)
	defer rc.Close()

	type dirMode struct {
		name string
		mode fs.FileMode
	}
	var dirs []dirMode
	tr := tar.NewReader(rc)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			// mutate.Extract ends the tar stream before it reports a
			// failure (an unsafe name, a layer that would not read) on the
			// pipe, so the error only shows after the tar trailer.
			if _, err := io.Copy(io.Discard, rc); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return err
		}
		name, err := localName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return err
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{name, mode})
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := localName(hdr.Linkname)
			if err != nil {
				return fmt.Errorf("hard link %s: %w", name, err)
			}
			if err := root.Link(target, name); err != nil {
				return err
			}
		default:
			// Devices and FIFOs need privileges, and no web process needs
			// them from its image.
			return fmt.Errorf("%s: unsupported tar entry type %q", name, hdr.Typeflag)
		}
	}
	// Directory modes last, so that a read-only directory (every Nix store
	// path is one) could still be filled. The owner keeps write access so
	// that the tree can be deleted afterwards, as a dyno's filesystem is
	// writable too.
	for _, d := range slices.Backward(dirs) {
		if err := root.Chmod(d.name, d.mode|0o700); err != nil {
			return err
		}
	}
	return nil
}

// localName turns a tar entry name into a slash-separated path relative to
// the image root. A leading "/" is read as the root, as container runtimes
// do; any ".." is refused outright rather than interpreted.
func localName(name string) (string, error) {
	rel := strings.TrimLeft(name, "/")
	if slices.Contains(strings.Split(rel, "/"), "..") {
		return "", fmt.Errorf("tar entry %q: a name with \"..\" could escape the root", name)
	}
	if rel == "" {
		return ".", nil
	}
	return path.Clean(rel), nil
}

// findProgram returns the in-image path (symlinks resolved) of the program a
// container runtime would run for argv0: absolute as is, a name with a slash
// relative to the working directory, a bare name looked up in the image's
// PATH.
func findProgram(root *os.Root, argv0, workdir, pathEnv string) (string, error) {
	var candidates []string
	switch {
	case path.IsAbs(argv0):
		candidates = []string{argv0}
	case strings.Contains(argv0, "/"):
		candidates = []string{path.Join(workdir, argv0)}
	default:
		for _, d := range filepath.SplitList(pathEnv) {
			if path.IsAbs(d) {
				candidates = append(candidates, path.Join(d, argv0))
			}
		}
	}
	for _, c := range candidates {
		p, err := resolve(root, c)
		if err != nil {
			continue
		}
		if fi, err := root.Stat(strings.TrimPrefix(p, "/")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("the image's entrypoint %q is not an executable file in the image (PATH=%q)", argv0, pathEnv)
}

// resolve follows symlinks in the in-image path p as the kernel would inside
// a chroot at root: absolute targets start again at root, and ".." stops at
// it. The host's own files (its /nix/store, say) are never consulted, so a
// test cannot pass by running the host's copy of a program.
func resolve(root *os.Root, p string) (string, error) {
	cur := "/"
	rest := strings.Split(p, "/")
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := root.Lstat(next[1:])
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := root.Readlink(next[1:])
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return cur, nil
}

func lookupEnv(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val // the last one wins, as in exec
		}
	}
	return v
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the dyno binds it; the OS rarely reuses a port that soon,
// and WaitReady would then report the dyno's bind error.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last outputCap bytes written to it; the process's
// stdout and stderr goroutines write to it concurrently.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - outputCap; over > 0 {
		b.buf = slices.Delete(b.buf, 0, over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
