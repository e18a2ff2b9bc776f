package artifact

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestResultRoundTrip(t *testing.T) {
	r := &Result{Revision: "abc", LockedFlake: "github:acme/shop/abc", Images: map[string]Image{"web": {ImageID: digest, Digest: digest}}}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Images["web"] != r.Images["web"] || got.LockedFlake != r.LockedFlake {
		t.Errorf("round trip changed the result: %+v", got)
	}
}

func TestResultsThatDoNotFitATerminationMessageAreRefused(t *testing.T) {
	r := &Result{LockedFlake: "path:/" + strings.Repeat("x", MaxResultSize), Images: map[string]Image{"web": {ImageID: digest, Digest: digest}}}
	if _, err := r.Encode(); err == nil {
		t.Error("encoded a result over the termination message limit")
	}
}

func TestParseResultRefusesMalformedInput(t *testing.T) {
	for name, in := range map[string]string{
		"not JSON":           "Error: build failed",
		"no locked flake":    `{"images":{"web":{"imageID":"` + digest + `","digest":"` + digest + `"}}}`,
		"no images":          `{"lockedFlake":"x"}`,
		"a malformed digest": `{"lockedFlake":"x","images":{"web":{"imageID":"sha256:zz","digest":"` + digest + `"}}}`,
		"too large":          `{"lockedFlake":"` + strings.Repeat("x", MaxResultSize) + `"}`,
	} {
		if _, err := ParseResult([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseResult([]byte(`{"lockedFlake":"x","unchanged":true}`)); err != nil {
		t.Errorf("an unchanged refresh was refused: %v", err)
	}
}

func TestReadManifestRefusesPathsOutsideTheWorkspace(t *testing.T) {
	for name, m := range map[string]string{
		"archive outside":   `{"lockedFlake":"x","processes":{"web":{"kind":"docker-archive","archive":"../../etc/shadow"}}}`,
		"absolute archive":  `{"lockedFlake":"x","processes":{"web":{"kind":"docker-archive","archive":"/etc/shadow"}}}`,
		"not a store path":  `{"lockedFlake":"x","processes":{"web":{"kind":"closure","closure":[{"path":"/etc","narSize":1}]}}}`,
		"store path escape": `{"lockedFlake":"x","processes":{"web":{"kind":"closure","closure":[{"path":"/nix/store/00000000000000000000000000000000-a/../../etc","narSize":1}]}}}`,
		"no processes":      `{"lockedFlake":"x","processes":{}}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadManifest(dir); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseResult(f *testing.F) {
	f.Add([]byte(`{"revision":"abc","lockedFlake":"x","images":{"web":{"imageID":"` + digest + `","digest":"` + digest + `"}}}`))
	f.Add([]byte(`{"lockedFlake":"x","unchanged":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResult(b)
		if err != nil {
			return
		}
		// Whatever parses must be a result the controller can use as is.
		if r.LockedFlake == "" || (len(r.Images) == 0 && !r.Unchanged) {
			t.Fatalf("accepted an unusable result: %+v", r)
		}
		for _, img := range r.Images {
			if !digestRE.MatchString(img.ImageID) || !digestRE.MatchString(img.Digest) {
				t.Fatalf("accepted a malformed digest: %+v", img)
			}
		}
	})
}
