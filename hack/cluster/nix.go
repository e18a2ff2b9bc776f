package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// NixImageFromHost assembles a stand-in for nixos/nix from this machine:
// Debian's nix-bin with every shared library it loads, and busybox (static)
// as the shell and the POSIX tools. It meets the contract of
// spec.build.image (docs/build-image.md): nix on PATH, /bin/sh, a
// single-user store owned by root that the build container may write, a
// nix.conf with flakes on and the sandbox off, HOME and a writable /tmp.
func NixImageFromHost() (v1.Image, error) {
	files := map[string]file{
		"/bin": {mode: 0o755}, "/usr": {mode: 0o755}, "/usr/bin": {mode: 0o755},
		"/etc": {mode: 0o755}, "/etc/nix": {mode: 0o755},
		"/tmp": {mode: 0o1777}, "/root": {mode: 0o700},
		"/nix": {mode: 0o755}, "/nix/store": {mode: 0o1775}, "/nix/var": {mode: 0o755},
		"/nix/var/nix": {mode: 0o755}, "/nix/var/nix/db": {mode: 0o755},
		"/nix/var/nix/gcroots": {mode: 0o755}, "/nix/var/nix/profiles": {mode: 0o755},
		"/nix/var/nix/temproots": {mode: 0o755}, "/nix/var/log": {mode: 0o755},
		"/etc/passwd": {mode: 0o644, content: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		"/etc/group":  {mode: 0o644, content: []byte("root:x:0:\nnogroup:x:65534:\n")},
		"/etc/nix/nix.conf": {mode: 0o644, content: []byte(
			"sandbox = false\nexperimental-features = nix-command flakes\nbuild-users-group =\n" +
				// This machine is offline: asking cache.nixos.org would
				// only cost retries. nixos/nix keeps its default cache.
				"substituters =\n")},
	}
	nix, err := exec.LookPath("nix")
	if err != nil {
		return nil, fmt.Errorf("the Nix image needs Debian's nix-bin (hack/install-nix.sh): %w", err)
	}
	nix, _ = filepath.EvalSymlinks(nix)
	if err := addHostFile(files, nix); err != nil {
		return nil, err
	}
	if nix != "/usr/bin/nix" {
		files["/usr/bin/nix"] = file{mode: 0o777, link: nix}
	}
	// Nix runs its build hook even with no remote builders.
	files["/usr/libexec"] = file{mode: 0o755}
	files["/usr/libexec/nix"] = file{mode: 0o755}
	files["/usr/libexec/nix/build-remote"] = file{mode: 0o777, link: "/usr/bin/nix"}
	for _, alias := range []string{"nix-build", "nix-store", "nix-instantiate", "nix-env", "nix-shell", "nix-hash", "nix-collect-garbage"} {
		files["/usr/bin/"+alias] = file{mode: 0o777, link: "nix"}
	}
	if err := addLibraries(files, nix); err != nil {
		return nil, err
	}

	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("the Nix image needs busybox-static: %w", err)
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	files["/bin/busybox"] = file{mode: 0o755, content: b}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if _, ok := files["/bin/"+applet]; !ok && applet != "busybox" {
			files["/bin/"+applet] = file{mode: 0o777, link: "busybox"}
		}
	}
	return layerImage(files, v1.Config{
		Cmd:        []string{"/bin/sh"},
		Env:        []string{"PATH=/usr/bin:/bin", "HOME=/root", "USER=root", "TMPDIR=/tmp"},
		WorkingDir: "/root",
	})
}

// addHostFile adds the host's file p (its content, following symlinks:
// a library under the name the loader asks for) and its directories.
func addHostFile(files map[string]file, p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
		if _, ok := files[d]; !ok {
			files[d] = file{mode: 0o755}
		}
	}
	files[p] = file{mode: int64(st.Mode().Perm()), content: b}
	return nil
}

// addLibraries adds every shared library the binary bin loads, as ldd
// lists them; nothing for a static binary.
func addLibraries(files map[string]file, bin string) error {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil
		}
		return fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "libfoo.so => /lib/x/libfoo.so (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
		for _, w := range strings.Fields(line) {
			if strings.HasPrefix(w, "/") {
				if err := addHostFile(files, w); err != nil {
					return err
				}
				break
			}
		}
	}
	return nil
}
