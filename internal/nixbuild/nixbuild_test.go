package nixbuild_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/image"
	"github.com/herokunix/herokunix/internal/nixbuild"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
)

const pkgs = "packages.x86_64-linux."

// nixOptions returns options for an offline build with the Nix on PATH,
// skipping the test when there is none unless HEROKUNIX_REQUIRE_NIX is set.
func nixOptions(t *testing.T) nixbuild.Nix {
	t.Helper()
	fixturestest.RequireNix(t)
	opts := nixbuild.Nix{Offline: true}
	if testing.Verbose() {
		opts.Stderr = os.Stderr
	}
	return opts
}

func TestResolveReturnsALockedRef(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Closure)

	locked, rev, err := nixbuild.Resolve(t.Context(), opts, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(locked, ref+"?") || !strings.Contains(locked, "narHash=sha256-") {
		t.Errorf("locked ref = %q, want %q with a narHash", locked, ref)
	}
	if rev != "" {
		t.Errorf("rev = %q for a path flake, want none", rev)
	}
}

func TestRunExportsAPlainPackageAsAClosure(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Closure)
	ws := t.TempDir()

	start := time.Now()
	m, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake: ref,
		Processes: map[string]artifact.BuildProcess{
			"web":    {Attribute: pkgs + "server"},
			"worker": {Attribute: pkgs + "default", Command: []string{"server", "--worker"}},
		},
	}, ws)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built and exported in %v", time.Since(start))

	assertManifestOnDisk(t, ws, m)
	if !strings.HasPrefix(m.LockedFlake, ref+"?") {
		t.Errorf("LockedFlake = %q, want the locked form of %q", m.LockedFlake, ref)
	}
	web := m.Processes["web"]
	if web.Kind != artifact.KindClosure {
		t.Fatalf("web kind = %q, want %q", web.Kind, artifact.KindClosure)
	}
	// The manifest records the spec's command as given; the image made from
	// it runs the package's only program (the default lives in image alone).
	if len(web.Command) != 0 {
		t.Errorf("web command = %q, want none recorded", web.Command)
	}
	img, _, err := image.FromClosure(filepath.Join(ws, artifact.StoreRoot), web.Closure, web.OutPath, web.Command, image.Options{TempDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{web.OutPath + "/bin/server"}; !slices.Equal(cfg.Config.Entrypoint, want) {
		t.Errorf("web entrypoint = %q, want the package's only program %q", cfg.Config.Entrypoint, want)
	}
	worker := m.Processes["worker"]
	if worker.OutPath != web.OutPath || !slices.Equal(worker.Command, []string{"server", "--worker"}) {
		t.Errorf("worker = %+v, want the same package with its own command", worker)
	}
	if len(web.Closure) < 2 {
		t.Fatalf("closure = %v, want the package and its share dependency", web.Closure)
	}
	assertClosureCopied(t, ws, web.Closure)
	if !slices.ContainsFunc(web.Closure, func(p artifact.StorePath) bool { return p.Path == web.OutPath }) {
		t.Errorf("closure %v lacks the output %s", web.Closure, web.OutPath)
	}
	fi, err := os.Stat(filepath.Join(ws, artifact.StoreRoot, web.OutPath, "bin", "server"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("copied server has mode %v, want it executable", fi.Mode())
	}
	greeting, err := os.ReadFile(filepath.Join(ws, artifact.StoreRoot, web.OutPath, "share", "herokunix", "greeting"))
	if err != nil {
		t.Fatalf("the package's symlink into its dependency does not resolve in the workspace: %v", err)
	}
	if string(greeting) != fixtures.ServerGreeting {
		t.Errorf("greeting = %q", greeting)
	}
}

func TestRunExportsDockerArchives(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.DockerArchive)
	ws := t.TempDir()

	m, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake: ref,
		Processes: map[string]artifact.BuildProcess{
			"web":    {Attribute: pkgs + "image"},
			"worker": {Attribute: pkgs + "gzipped"},
			"stream": {Attribute: pkgs + "stream"},
		},
	}, ws)
	if err != nil {
		t.Fatal(err)
	}
	assertManifestOnDisk(t, ws, m)

	want := map[string]string{"web": "web.tar", "worker": "worker.tar.gz", "stream": "stream.tar"}
	for name, archive := range want {
		p := m.Processes[name]
		if p.Kind != artifact.KindDockerArchive || p.Archive != archive {
			t.Errorf("%s: kind %q archive %q, want %q %q", name, p.Kind, p.Archive, artifact.KindDockerArchive, archive)
			continue
		}
		if name == "worker" {
			continue // compressed: compared with web.tar below
		}
		img, err := tarball.ImageFromPath(filepath.Join(ws, p.Archive), nil)
		if err != nil {
			t.Errorf("%s: reading %s: %v", name, p.Archive, err)
			continue
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{"/bin/server"}) {
			t.Errorf("%s: entrypoint %q", name, cf.Config.Entrypoint)
		}
	}
	plain, err := os.ReadFile(filepath.Join(ws, "web.tar"))
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := os.ReadFile(filepath.Join(ws, "stream.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, streamed) {
		t.Error("the stream script's output differs from the tarball it streams")
	}
	f, err := os.Open(filepath.Join(ws, "worker.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, unzipped) {
		t.Error("the gzip-compressed archive does not hold the same tarball")
	}
}

func TestRunExportsNix2ContainerJSONAndItsClosure(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Nix2Container)
	ws := t.TempDir()

	m, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     ref,
		Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "default"}},
	}, ws)
	if err != nil {
		t.Fatal(err)
	}
	assertManifestOnDisk(t, ws, m)
	web := m.Processes["web"]
	if web.Kind != artifact.KindNix2Container || web.Nix2ContainerJSON != "web.json" {
		t.Fatalf("web = %+v, want nix2container with web.json", web)
	}
	b, err := os.ReadFile(filepath.Join(ws, web.Nix2ContainerJSON))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(web.OutPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, orig) {
		t.Error("the JSON in the workspace differs from the build output")
	}
	if len(web.Closure) == 0 {
		t.Fatal("no closure for the layers' store paths")
	}
	assertClosureCopied(t, ws, web.Closure)
	server := web.Closure[0].Path
	if !strings.HasSuffix(server, "-herokunix-fixture-server") {
		t.Fatalf("closure %v, want the server package", web.Closure)
	}
	if !bytes.Contains(b, []byte(server+"/bin/server")) {
		t.Errorf("image JSON does not name %s/bin/server as entrypoint: %s", server, b)
	}
	if _, err := os.Stat(filepath.Join(ws, artifact.StoreRoot, server, "bin", "server")); err != nil {
		t.Error(err)
	}
}

func TestRunHonoursAStatedKind(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.DockerArchive)

	m, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake: ref,
		Processes: map[string]artifact.BuildProcess{
			"web": {Attribute: pkgs + "stream", Kind: artifact.KindClosure, Command: []string{"/bin/true"}},
		},
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Processes["web"]; got.Kind != artifact.KindClosure || len(got.Closure) != 2 {
		t.Errorf("web = %+v, want the script and its tarball in closure mode", got)
	}

	_, err = nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     ref,
		Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "image", Kind: artifact.KindNix2Container}},
	}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "nix2container") {
		t.Errorf("a tarball stated to be nix2container JSON: err = %v, want a refusal", err)
	}
}

func TestRunReportsTheTailOfNixOutputForAMissingAttribute(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Closure)

	_, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     ref,
		Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "no-such-package"}},
	}, t.TempDir())
	var nixErr *nixbuild.NixError
	if !errors.As(err, &nixErr) {
		t.Fatalf("err = %v, want a *NixError", err)
	}
	if !strings.HasPrefix(nixErr.Op, "nix build ") {
		t.Errorf("Op = %q", nixErr.Op)
	}
	if !strings.Contains(nixErr.Tail, "no-such-package") || !strings.Contains(err.Error(), nixErr.Tail) {
		t.Errorf("error %q does not carry Nix's complaint about the attribute (tail %q)", err, nixErr.Tail)
	}
}

func TestRunReportsAFailingBuilder(t *testing.T) {
	opts := nixOptions(t)
	dir := writeFlake(t, `builtins.derivation {
		name = "herokunix-failing"; system = "x86_64-linux"; builder = "/bin/sh";
		args = [ "-c" "i=0; while [ $i -lt 30 ]; do echo log line $i; i=$((i+1)); done; exit 3" ];
	}`)
	_, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     "path:" + dir,
		Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "default"}},
	}, t.TempDir())
	var nixErr *nixbuild.NixError
	if !errors.As(err, &nixErr) {
		t.Fatalf("err = %v, want a *NixError", err)
	}
	if !strings.Contains(nixErr.Tail, "log line 29") || strings.Contains(nixErr.Tail, "log line 0\n") {
		t.Errorf("tail should end with the builder's last lines, got:\n%s", nixErr.Tail)
	}
	if n := strings.Count(nixErr.Tail, "\n") + 1; n > 20 {
		t.Errorf("tail has %d lines, want at most 20", n)
	}
}

func TestRunRefusesBadInputBeforeRunningNix(t *testing.T) {
	// A Nix that cannot run: any attempt would be an exec error in a *NixError.
	opts := nixbuild.Nix{Nix: filepath.Join(t.TempDir(), "no-nix-here")}
	ok := artifact.BuildProcess{Attribute: "packages.x86_64-linux.default"}
	for _, tc := range []struct {
		name string
		req  artifact.BuildRequest
	}{
		{"a flake ref with a space", artifact.BuildRequest{Flake: "path:/tmp/a b", Processes: map[string]artifact.BuildProcess{"web": ok}}},
		{"an empty flake ref", artifact.BuildRequest{Flake: "", Processes: map[string]artifact.BuildProcess{"web": ok}}},
		{"a flake ref that is an option", artifact.BuildRequest{Flake: "--impure", Processes: map[string]artifact.BuildProcess{"web": ok}}},
		{"a flake ref with a newline", artifact.BuildRequest{Flake: "github:a/b\n", Processes: map[string]artifact.BuildProcess{"web": ok}}},
		{"a flake ref with an attribute", artifact.BuildRequest{Flake: "github:a/b#c", Processes: map[string]artifact.BuildProcess{"web": ok}}},
		{"a flake ref that is too long", artifact.BuildRequest{Flake: "github:" + strings.Repeat("a", 1100), Processes: map[string]artifact.BuildProcess{"web": ok}}},
		{"an attribute starting with '-'", artifact.BuildRequest{Flake: "github:a/b", Processes: map[string]artifact.BuildProcess{"web": {Attribute: "--option"}}}},
		{"an attribute with a tab", artifact.BuildRequest{Flake: "github:a/b", Processes: map[string]artifact.BuildProcess{"web": {Attribute: "a\tb"}}}},
		{"an empty attribute", artifact.BuildRequest{Flake: "github:a/b", Processes: map[string]artifact.BuildProcess{"web": {}}}},
		{"a process name that is a path", artifact.BuildRequest{Flake: "github:a/b", Processes: map[string]artifact.BuildProcess{"../web": ok}}},
		{"an unknown kind", artifact.BuildRequest{Flake: "github:a/b", Processes: map[string]artifact.BuildProcess{"web": {Attribute: "x", Kind: "oci"}}}},
		{"no processes", artifact.BuildRequest{Flake: "github:a/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nixbuild.Run(t.Context(), opts, tc.req, t.TempDir())
			var nixErr *nixbuild.NixError
			if err == nil || errors.As(err, &nixErr) {
				t.Fatalf("err = %v, want a refusal before Nix runs", err)
			}
		})
	}
	if _, _, err := nixbuild.Resolve(t.Context(), opts, "path:/tmp/a b"); err == nil {
		t.Error("Resolve accepted a flake ref with a space")
	} else if _, isNix := errors.AsType[*nixbuild.NixError](err); isNix {
		t.Errorf("Resolve ran Nix for a bad ref: %v", err)
	}
}

func TestRunStopsWhenTheTimeoutHasAlreadyPassed(t *testing.T) {
	opts := nixOptions(t)
	opts.Timeout = time.Nanosecond
	ref := fixturestest.Prepare(t, fixtures.Closure)

	_, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     ref,
		Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "default"}},
	}, t.TempDir())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline exceeded", err)
	}
}

func TestRunStopsABlockedBuildAtTheTimeout(t *testing.T) {
	opts := nixOptions(t)
	opts.Timeout = 3 * time.Second
	fifo, ref := blockingFlake(t)
	t.Cleanup(func() { unblock(fifo) })

	_, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     ref,
		Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "default"}},
	}, t.TempDir())
	var nixErr *nixbuild.NixError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &nixErr) {
		t.Fatalf("err = %v, want a *NixError for the deadline", err)
	}
}

func TestRunStopsABlockedBuildWhenCancelled(t *testing.T) {
	opts := nixOptions(t)
	fifo, ref := blockingFlake(t)
	t.Cleanup(func() { unblock(fifo) })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := nixbuild.Run(ctx, opts, artifact.BuildRequest{
			Flake:     ref,
			Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "default"}},
		}, t.TempDir())
		done <- err
	}()
	// Opening the fifo for writing returns once the builder has opened it
	// for reading: the build is then running and blocked.
	opened := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		opened <- f
	}()
	select {
	case err := <-done:
		t.Fatalf("Run returned before the builder blocked: %v", err)
	case f := <-opened:
		if f != nil {
			defer f.Close()
		}
	}
	cancel()
	err := <-done
	var nixErr *nixbuild.NixError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &nixErr) {
		t.Fatalf("err = %v, want a *NixError for the cancellation", err)
	}
}

// blockingFlake writes a flake whose default package's builder blocks reading
// a fifo, and returns the fifo and the flake ref. The derivation embeds the
// fifo's path, so it is new for every test.
func blockingFlake(t *testing.T) (fifo, ref string) {
	t.Helper()
	// The builder runs as a Nix build user: the fifo must be reachable by others.
	dir, err := os.MkdirTemp("", "herokunix-fifo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo = filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	flake := writeFlake(t, fmt.Sprintf(`builtins.derivation {
		name = "herokunix-blocked"; system = "x86_64-linux"; builder = "/bin/sh";
		args = [ "-c" "read line < %s; echo done > $out" ];
	}`, fifo))
	return fifo, "path:" + flake
}

// unblock lets a builder still blocked on fifo finish.
func unblock(fifo string) {
	if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}

// writeFlake writes an input-free flake whose packages.x86_64-linux.default
// is the given Nix expression.
func writeFlake(t *testing.T, expr string) string {
	t.Helper()
	dir := t.TempDir()
	flake := fmt.Sprintf("{\n  outputs = { self }: {\n    packages.x86_64-linux.default = %s;\n  };\n}\n", expr)
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte(flake), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func assertManifestOnDisk(t *testing.T, ws string, m *artifact.Manifest) {
	t.Helper()
	read, err := artifact.ReadManifest(ws)
	if err != nil {
		t.Fatal(err)
	}
	if len(read.Processes) != len(m.Processes) || read.LockedFlake != m.LockedFlake || read.Revision != m.Revision || read.Unchanged != m.Unchanged {
		t.Errorf("manifest on disk %+v differs from the one returned %+v", read, m)
	}
}

func assertClosureCopied(t *testing.T, ws string, closure []artifact.StorePath) {
	t.Helper()
	for _, p := range closure {
		if p.NarSize <= 0 {
			t.Errorf("%s has NAR size %d", p.Path, p.NarSize)
		}
		if _, err := os.Lstat(filepath.Join(ws, artifact.StoreRoot, p.Path)); err != nil {
			t.Errorf("%s was not copied into the workspace: %v", p.Path, err)
		}
	}
}

func TestResolveReadsTheExtraNixConf(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Closure)
	// A flake registry named in the extra nix.conf is the only way the
	// indirect ref below can resolve.
	dir := t.TempDir()
	registry := filepath.Join(dir, "registry.json")
	reg := fmt.Sprintf(`{"version":2,"flakes":[{"from":{"type":"indirect","id":"herokunix-fixture"},"to":{"type":"path","path":%q}}]}`,
		strings.TrimPrefix(ref, "path:"))
	if err := os.WriteFile(registry, []byte(reg), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.NixConfFile = filepath.Join(dir, "nix.conf")
	if err := os.WriteFile(opts.NixConfFile, []byte("flake-registry = "+registry+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	locked, _, err := nixbuild.Resolve(t.Context(), opts, "flake:herokunix-fixture")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(locked, ref+"?") {
		t.Errorf("locked = %q, want the fixture %q", locked, ref)
	}
}

func TestRunCopiesTheClosureFileByFileWhateverTheWorkspacePath(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Closure)
	// A '?' could not go into a local?root= store URL; the closure's files
	// are copied, no store (and no database) is made there.
	ws := filepath.Join(t.TempDir(), "work?space")

	m, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{
		Flake:     ref,
		Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "default"}},
	}, ws)
	if err != nil {
		t.Fatal(err)
	}
	web := m.Processes["web"]
	assertClosureCopied(t, ws, web.Closure)
	if _, err := os.Stat(filepath.Join(ws, artifact.StoreRoot, "nix", "var")); !os.IsNotExist(err) {
		t.Errorf("nix copy seems to have run: %v", err)
	}
	server := filepath.Join(ws, artifact.StoreRoot, web.OutPath, "bin", "server")
	want, err := os.ReadFile(filepath.Join(web.OutPath, "bin", "server"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(server)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("copied server differs from the store's (%v)", err)
	}
	if fi, err := os.Stat(server); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("copied server: %v, %v; want mode 0555", fi, err)
	}
}

// TestRunSkipsAFlakeStillAtSkipIfRevisionAndResolvesOnce runs Nix through a
// wrapper that logs every invocation: a refresh that finds the flake still
// at SkipIfRevision builds nothing and says so in the manifest, and one that
// finds new code resolves the flake once, not twice.
func TestRunSkipsAFlakeStillAtSkipIfRevisionAndResolvesOnce(t *testing.T) {
	opts := nixOptions(t)
	dir := strings.TrimPrefix(fixturestest.Prepare(t, fixtures.Closure), "path:")
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "fixture")
	rev := git("rev-parse", "HEAD")
	ref := "git+file://" + dir

	realNix, err := exec.LookPath("nix")
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "nix.log")
	wrapper := filepath.Join(t.TempDir(), "nix")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %q\nexec %q \"$@\"\n", log, realNix)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	opts.Nix = wrapper
	calls := func() []string {
		t.Helper()
		b, err := os.ReadFile(log)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		os.Remove(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	count := func(lines []string, sub string) int {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, sub) {
				n++
			}
		}
		return n
	}
	req := artifact.BuildRequest{Flake: ref, Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "server"}}}

	req.SkipIfRevision = rev
	ws := t.TempDir()
	m, err := nixbuild.Run(t.Context(), opts, req, ws)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Unchanged || m.Revision != rev || len(m.Processes) != 0 {
		t.Errorf("manifest = %+v, want Unchanged at %s with nothing built", m, rev)
	}
	assertManifestOnDisk(t, ws, m)
	if got := calls(); count(got, "flake metadata") != 1 || count(got, " build ") != 0 {
		t.Errorf("an unchanged refresh ran Nix as %q, want one nix flake metadata and no build", got)
	}

	req.SkipIfRevision = strings.Repeat("0", 40)
	ws = t.TempDir()
	m, err = nixbuild.Run(t.Context(), opts, req, ws)
	if err != nil {
		t.Fatal(err)
	}
	if m.Unchanged || m.Revision != rev || m.Processes["web"].OutPath == "" {
		t.Errorf("manifest = %+v, want a build of %s", m, rev)
	}
	assertManifestOnDisk(t, ws, m)
	if got := calls(); count(got, "flake metadata") != 1 || count(got, " build ") != 1 {
		t.Errorf("a refresh that found new code ran Nix as %q, want one nix flake metadata and one build", got)
	}
}

// A source without a rev (path:) is identified by its narHash.
func TestRunNamesAPathFlakeByItsNarHash(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Closure)
	ws := t.TempDir()
	m, err := nixbuild.Run(t.Context(), opts, artifact.BuildRequest{Flake: ref, Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "server"}}}, ws)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Revision) != 64 || strings.Trim(m.Revision, "0123456789abcdef") != "" {
		t.Errorf("revision = %q, want the hex narHash of %s", m.Revision, m.LockedFlake)
	}
	assertManifestOnDisk(t, ws, m)
}

// TestRunSkipsASourceWithoutARevStillAtItsNarHash: a source without a rev
// (path:, and so a moving tarball like https://…/main.tar.gz) reports its
// narHash as revision; a refresh handed that revision back finds it
// unchanged and builds nothing, and one handed another builds.
func TestRunSkipsASourceWithoutARevStillAtItsNarHash(t *testing.T) {
	opts := nixOptions(t)
	ref := fixturestest.Prepare(t, fixtures.Closure)
	req := artifact.BuildRequest{Flake: ref, Processes: map[string]artifact.BuildProcess{"web": {Attribute: pkgs + "server"}}}
	first, err := nixbuild.Run(t.Context(), opts, req, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if first.Unchanged || first.Revision == "" {
		t.Fatalf("first build: manifest = %+v", first)
	}

	req.SkipIfRevision = first.Revision
	ws := t.TempDir()
	m, err := nixbuild.Run(t.Context(), opts, req, ws)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Unchanged || m.Revision != first.Revision || len(m.Processes) != 0 {
		t.Errorf("refresh at the same narHash: manifest = %+v, want Unchanged at %s with nothing built", m, first.Revision)
	}
	assertManifestOnDisk(t, ws, m)

	req.SkipIfRevision = strings.Repeat("0", 64)
	m, err = nixbuild.Run(t.Context(), opts, req, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if m.Unchanged || m.Revision != first.Revision || m.Processes["web"].OutPath == "" {
		t.Errorf("refresh handed another revision: manifest = %+v, want a build of %s", m, first.Revision)
	}
}
