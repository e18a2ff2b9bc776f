package dyno_test

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/herokunix/herokunix/test/dyno"
	"github.com/herokunix/herokunix/test/fixtures"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
)

const store = "nix/store/0123456789abcdfghijklmnpqrsvwxyz-server"

type entry struct {
	hdr  tar.Header
	body []byte
}

// imageOf makes a one-layer image from entries with the given config.
func imageOf(t *testing.T, cfg v1.Config, entries ...entry) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}}
}

func file(name string, mode int64, body []byte) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}, body: body}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}}
}

// serverImage lays the fixture server out like a Nix image: the program in a
// read-only store path, and /bin an absolute symlink into it, so that finding
// the entrypoint needs the image's PATH and symlinks resolved inside the
// image, not on the host.
func serverImage(t *testing.T, cfg v1.Config) v1.Image {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "server")
	fixturestest.BuildServer(t, bin)
	server, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return imageOf(t, cfg,
		dir("nix/", 0o755), dir("nix/store/", 0o755), dir(store+"/", 0o555), dir(store+"/bin/", 0o555),
		file(store+"/bin/server", 0o555, server),
		symlink("bin", "/"+store+"/bin"),
	)
}

func TestStartRunsTheEntrypointWithPORT(t *testing.T) {
	img := serverImage(t, v1.Config{Entrypoint: []string{"server"}, Env: []string{"PATH=/bin", "PORT=1"}})
	root := t.TempDir()

	d, err := dyno.Start(t.Context(), img, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	if err := d.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	body, err := d.Get(t.Context(), "/")
	if err != nil || body != fixtures.ServerGreeting {
		t.Errorf("GET / = %q, %v; want %q", body, err, fixtures.ServerGreeting)
	}

	fi, err := os.Stat(filepath.Join(root, store, "bin", "server"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o555 {
		t.Errorf("server mode = %v, want the image's 0555", fi.Mode().Perm())
	}
	if target, err := os.Readlink(filepath.Join(root, "bin")); err != nil || target != "/"+store+"/bin" {
		t.Errorf("bin links to %q (%v), want the image's /%s/bin", target, err, store)
	}
	if !strings.Contains(d.Output(), "listening on") {
		t.Errorf("output %q does not hold the server's log", d.Output())
	}
}

func TestACrashIsReportedWithItsOutput(t *testing.T) {
	// The host's shell, copied into the image: it is dynamically linked, but
	// its loader and libc resolve on the host since nothing is chrooted.
	sh, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh on this host")
	}
	img := imageOf(t, v1.Config{Entrypoint: []string{"sh", "-c"}, Cmd: []string{"echo boom $EXTRA port=$PORT home=${HOME:-unset} >&2; exit 3"}, Env: []string{"PATH=/usr/bin:/bin"}},
		dir("bin/", 0o755), file("bin/sh", 0o755, sh))
	d, err := dyno.Start(t.Context(), img, t.TempDir(), []string{"EXTRA=from-caller"})
	if err != nil {
		t.Fatal(err)
	}
	err = d.WaitReady(t.Context())
	// The environment is the image's, the caller's and PORT, and nothing
	// from this process (HOME).
	port := d.URL()[strings.LastIndex(d.URL(), ":")+1:]
	if want := "boom from-caller port=" + port + " home=unset\n"; d.Output() != want {
		t.Errorf("output = %q, want %q", d.Output(), want)
	}
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("WaitReady = %v, want an exit error with the output", err)
	}
	err = d.Stop()
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Stop = %v, want exit status 3 with the output", err)
	}
}

func TestStartRefusesAMissingEntrypoint(t *testing.T) {
	// /bin/sh is a dangling symlink in the image; the host's /bin/sh must
	// not be run instead.
	img := imageOf(t, v1.Config{Entrypoint: []string{"/bin/sh"}},
		dir("bin/", 0o755), symlink("bin/sh", "/nowhere/sh"))
	if d, err := dyno.Start(t.Context(), img, t.TempDir(), nil); err == nil {
		d.Stop()
		t.Fatal("Start succeeded")
	} else if !strings.Contains(err.Error(), "not an executable file in the image") {
		t.Errorf("Start = %v, want a missing entrypoint", err)
	}
}

// Names that would escape the root are refused (mutate.Extract already drops
// links whose targets escape, and os.Root stops writes through a symlink);
// either way nothing lands outside dir.
func TestNothingIsWrittenOutsideTheRoot(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
		wantErr bool
	}{
		{"dot-dot", []entry{file("../escaped", 0o644, []byte("x"))}, true},
		{"nested dot-dot", []entry{dir("a/", 0o755), file("a/../../escaped", 0o644, []byte("x"))}, true},
		{"through an absolute symlink", []entry{symlink("evil", "/.."), file("evil/escaped", 0o644, []byte("x"))}, false},
		{"through a relative escaping symlink", []entry{symlink("evil", "../.."), file("evil/escaped", 0o644, []byte("x"))}, false},
		{"hard link out", []entry{{hdr: tar.Header{Name: "escaped", Typeflag: tar.TypeLink, Linkname: "../outside"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			if err := os.WriteFile(filepath.Join(parent, "outside"), []byte("secret"), 0o644); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(parent, "root")
			img := imageOf(t, v1.Config{Entrypoint: []string{"/bin/server"}}, tc.entries...)
			d, err := dyno.Start(t.Context(), img, root, nil)
			if err == nil {
				d.Stop()
				t.Fatal("Start succeeded with no entrypoint in the image")
			}
			if tc.wantErr && !strings.Contains(err.Error(), "unpacking") {
				t.Errorf("Start = %v, want an unpacking error", err)
			}
			if _, err := os.Lstat(filepath.Join(parent, "escaped")); err == nil {
				t.Error("a file was written outside the root")
			}
			if fi, err := os.Lstat(filepath.Join(root, "escaped")); err == nil && fi.Mode().IsRegular() {
				t.Error("a hard link to a file outside the root was made")
			}
		})
	}
}
