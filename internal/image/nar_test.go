package image

import (
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/test/fixtures/fixturestest"
)

// nixNarHash is the NAR hash real Nix gives the file system object p
// (nix-store --dump).
func nixNarHash(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("nix-store", "--dump", p).Output()
	if err != nil {
		t.Fatalf("nix-store --dump %s: %v", p, err)
	}
	h := sha256.Sum256(out)
	return nixhash.MustNewHash(nixhash.SHA256, h[:]).Format(nixhash.SRI, true)
}

// The NAR hash the push takes while it writes a layer is Nix's own, for
// every shape a store path can have: nested and empty directories, names
// that sort around "/" or start with "..", empty files and files whose
// size is a multiple of 8 or not, executables, symlinks, a store path that
// is a single file or a symlink. Each layer is recorded; a wrong claim is
// refused.
func TestTheNarHashTakenWithTheTarIsNixs(t *testing.T) {
	fixturestest.RequireNix(t)
	root := t.TempDir()
	tree := storePathFor(40, "tree")
	makeStorePath(t, root, tree, map[string]file{
		"a/b":            {body: "eight by"},
		"a-b":            {body: "nine bytes"},
		"a.b/c":          {body: ""},
		"..data/x":       {body: "dotdot"},
		"bin/run":        {body: "#!run", mode: 0o755},
		"empty/deeper":   {dir: true},
		"lib/libx.so":    {link: "libx.so.1"},
		"lib/libx.so.1":  {body: strings.Repeat("x", 4097)},
		"share/z/y/x/w":  {body: "deep"},
		"share/z/y/last": {body: "after the deep one"},
	})
	single := storePathFor(41, "single.json")
	if err := os.WriteFile(filepath.Join(root, single), []byte(`{"a":1}`), 0o444); err != nil {
		t.Fatal(err)
	}
	link := storePathFor(42, "link")
	if err := os.Symlink(tree+"/bin/run", filepath.Join(root, link)); err != nil {
		t.Fatal(err)
	}
	var closure []artifact.StorePath
	for _, sp := range []string{tree, single, link} {
		closure = append(closure, artifact.StorePath{Path: sp, NarSize: 1, NarHash: nixNarHash(t, filepath.Join(root, sp))})
	}
	img, _, err := FromClosure(root, closure, tree, []string{"bin/run"}, Options{TempDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, img)
	for _, sp := range closure {
		found := false
		for _, r := range recs {
			found = found || r.Key == narKey(sp.Path, sp.NarHash)
		}
		if !found {
			t.Errorf("%s is not recorded: the push's NAR hash is not Nix's (records %+v)", sp.Path, recs)
		}
	}

	// The same store paths, all in one merged layer.
	img, _, err = FromClosure(root, closure, tree, []string{"bin/run"}, Options{TempDir: t.TempDir(), MaxLayers: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if recs := records(t, img); len(recs) != 1 {
		t.Errorf("merged layer records %+v, want one", recs)
	}

	wrong := append([]artifact.StorePath(nil), closure...)
	wrong[1].NarHash = closure[0].NarHash
	_, _, err = FromClosure(root, wrong, tree, []string{"bin/run"}, Options{TempDir: t.TempDir()}, nil)
	var mismatch *NarMismatchError
	if !errors.As(err, &mismatch) || mismatch.StorePath != single || mismatch.Read != closure[1].NarHash {
		t.Errorf("a wrong claim for %s: %v, want a mismatch reading %s", single, err, closure[1].NarHash)
	}
}
