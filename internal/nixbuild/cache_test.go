package nixbuild_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herokunix/herokunix/internal/nixbuild"
)

// nixCmd runs a Nix command (nix, nix-store) with the new CLI enabled and
// returns its trimmed stdout.
func nixCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, append([]string{"--extra-experimental-features", "nix-command flakes"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// buildPaths builds, in the host's store, input-addressed paths named by
// the map's keys, each referring to the paths its value lists, and
// returns their store paths. The salt makes them new to the store.
func buildPaths(t *testing.T, deps map[string][]string) map[string]string {
	t.Helper()
	salt := fmt.Sprint(time.Now().UnixNano())
	var b strings.Builder
	b.WriteString("let\n")
	for _, name := range []string{"b", "a", "c", "m", "d"} {
		refs, ok := deps[name]
		if !ok {
			continue
		}
		var env, script strings.Builder
		for _, r := range refs {
			fmt.Fprintf(&env, " %s = %s;", r, r)
			fmt.Fprintf(&script, " echo $%s >> $out;", r)
		}
		fmt.Fprintf(&b, "  %s = builtins.derivation { name = %q; system = \"x86_64-linux\"; builder = \"/bin/sh\"; salt = %q;%s args = [ \"-c\" \"echo %s > $out;%s\" ]; };\n",
			name, "herokunix-cache-"+name, salt, env.String(), name, script.String())
	}
	b.WriteString("in { ")
	for name := range deps {
		fmt.Fprintf(&b, "%s = %s; ", name, name)
	}
	b.WriteString("}\n")
	file := filepath.Join(t.TempDir(), "paths.nix")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name := range deps {
		out[name] = nixCmd(t, "nix-build", "--no-out-link", "--option", "substituters", "", file, "-A", name)
	}
	return out
}

func validIn(t *testing.T, store, path string) bool {
	t.Helper()
	err := exec.Command("nix", "--extra-experimental-features", "nix-command", "--store", store, "path-info", path).Run()
	return err == nil
}

// TestPrepareCacheKeepsOnlyWhatItCanVerify: a cache is seeded from the
// image's store; later, the image's paths are put back as the image has
// them, a path signed by a trusted key is kept, and a path that is
// unsigned, signed but altered, or refers to an unsigned one is deleted,
// with the last build's roots kept for the paths that stay. Over the size
// bound, the garbage collector keeps the rooted path only.
func TestPrepareCacheKeepsOnlyWhatItCanVerify(t *testing.T) {
	n := nixOptions(t)
	n.Offline = false
	tmp := t.TempDir()
	image, cache := filepath.Join(tmp, "image", "nix"), filepath.Join(tmp, "cache", "nix")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := buildPaths(t, map[string][]string{"m": nil, "a": nil, "b": nil, "c": {"b"}, "d": nil})
	// The image holds m (standing in for its Nix).
	nixCmd(t, "nix", "copy", "--no-check-sigs", "--to", filepath.Dir(image), paths["m"])

	opts := nixbuild.CacheOptions{Dir: cache, ImageDir: image, Record: filepath.Join(tmp, "cache", "checked.json")}
	rep, err := nixbuild.PrepareCache(t.Context(), n, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Seeded || !validIn(t, filepath.Dir(cache), paths["m"]) {
		t.Fatalf("first use: %v; want the cache seeded with the image's path", rep)
	}

	// A build left a, b, c and d; a, c and d were signed with the trusted
	// key (c refers to the unsigned b), and then d was altered.
	store := filepath.Dir(cache)
	nixCmd(t, "nix", "copy", "--no-check-sigs", "--to", store, paths["a"], paths["c"], paths["d"])
	keyFile := filepath.Join(tmp, "key")
	secret := nixCmd(t, "nix", "key", "generate-secret", "--key-name", "herokunix-test-1")
	if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nix", "--extra-experimental-features", "nix-command", "key", "convert-secret-to-public")
	cmd.Stdin = strings.NewReader(secret)
	pub, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	n.TrustedPublicKeys = []string{strings.TrimSpace(string(pub))}
	nixCmd(t, "nix", "store", "sign", "--store", store, "--key-file", keyFile, paths["a"], paths["c"], paths["d"])
	alter := func(p string) {
		real := filepath.Join(cache, "store", filepath.Base(p))
		if err := os.Chmod(real, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(real, []byte("altered\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	alter(paths["d"])
	alter(paths["m"]) // the image's own path, which a build replaced
	// The build's roots name a and b.
	roots := nixbuild.CacheRootsDir(cache)
	if err := os.MkdirAll(roots, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{paths["a"], paths["b"]} {
		if err := os.Symlink(p, filepath.Join(roots, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}

	rep, err = nixbuild.PrepareCache(t.Context(), n, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Seeded {
		t.Fatalf("second use seeded again: %v", rep)
	}
	for name, want := range map[string]bool{"a": true, "b": false, "c": false, "d": false, "m": true} {
		if got := validIn(t, store, paths[name]); got != want {
			t.Errorf("after the check, %s valid = %v, want %v (%v)", name, got, want, rep)
		}
	}
	// The signed a, c and d were hashed; b, signed by no one, failed
	// without it.
	if rep.Hashed != 3 {
		t.Errorf("%d paths hashed, want 3: a, c and d, not the unsigned b (%v)", rep.Hashed, rep)
	}
	got, err := os.ReadFile(filepath.Join(cache, "store", filepath.Base(paths["m"])))
	if err != nil || string(got) != "m\n" {
		t.Errorf("the image's path holds %q (%v), want the image's content", got, err)
	}
	nixCmd(t, "nix", "store", "verify", "--no-trust", "--store", store, paths["m"])
	entries, _ := os.ReadDir(roots)
	if len(entries) != 1 || entries[0].Name() != filepath.Base(paths["a"]) {
		t.Errorf("roots after the check: %v, want a only", entries)
	}

	// Checked again as it was, nothing is hashed; a kept path altered
	// since (with its registration left alone) is hashed, and deleted.
	rep, err = nixbuild.PrepareCache(t.Context(), n, opts)
	if err != nil || rep.Hashed != 0 || rep.Kept != rep.Hashed+1 {
		t.Errorf("unchanged cache: %v, %v; want a kept without hashing", rep, err)
	}
	// The record also remembers what ran before: bring a back altered.
	alter(paths["a"])
	rep, err = nixbuild.PrepareCache(t.Context(), n, opts)
	if err != nil || rep.Hashed != 1 || rep.Deleted != 1 || validIn(t, store, paths["a"]) {
		t.Errorf("a altered after its check: %v, %v; want it hashed and deleted", rep, err)
	}
	nixCmd(t, "nix", "copy", "--no-check-sigs", "--to", store, paths["a"])
	nixCmd(t, "nix", "store", "sign", "--store", store, "--key-file", keyFile, paths["a"])
	if err := os.Symlink(paths["a"], filepath.Join(roots, filepath.Base(paths["a"]))); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}

	// Over the bound, only the rooted a (and the image's m) stay.
	nixCmd(t, "nix", "copy", "--no-check-sigs", "--to", store, paths["c"])
	nixCmd(t, "nix", "store", "sign", "--store", store, "--key-file", keyFile, paths["b"], paths["c"])
	opts.Budget = 1
	rep, err = nixbuild.PrepareCache(t.Context(), n, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Collected || rep.Seeded {
		t.Errorf("over the bound: %v, want collected", rep)
	}
	for name, want := range map[string]bool{"a": true, "b": false, "c": false, "m": true} {
		if got := validIn(t, store, paths[name]); got != want {
			t.Errorf("after collecting, %s valid = %v, want %v", name, got, want)
		}
	}
}

// TestPrepareCacheSeedsAgainWhatItCannotCheck: a store directory replaced
// by a symlink is not followed; the cache starts afresh from the image.
func TestPrepareCacheSeedsAgainWhatItCannotCheck(t *testing.T) {
	n := nixOptions(t)
	tmp := t.TempDir()
	image, cache := filepath.Join(tmp, "image", "nix"), filepath.Join(tmp, "cache", "nix")
	for _, d := range []string{cache, filepath.Join(image, "store"), filepath.Join(image, "var", "nix", "db"), filepath.Join(tmp, "elsewhere")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := nixbuild.CacheOptions{Dir: cache, ImageDir: image}
	if _, err := nixbuild.PrepareCache(t.Context(), n, opts); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(cache, "store")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tmp, "elsewhere"), filepath.Join(cache, "store")); err != nil {
		t.Fatal(err)
	}
	rep, err := nixbuild.PrepareCache(t.Context(), n, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Seeded || !strings.Contains(rep.Reason, "store") {
		t.Errorf("%v, want seeded again because of the store", rep)
	}
	if fi, err := os.Lstat(filepath.Join(cache, "store")); err != nil || !fi.IsDir() {
		t.Errorf("store after seeding: %v, %v; want a directory", fi, err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "elsewhere")); err != nil {
		t.Errorf("the symlink's target was touched: %v", err)
	}
}
