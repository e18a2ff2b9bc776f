package artifact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
		"another app's path": `{"lockedFlake":"x","images":{"../other-app/web":{"imageID":"` + digest + `","digest":"` + digest + `"}}}`,
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
		"archive outside":    `{"lockedFlake":"x","processes":{"web":{"kind":"docker-archive","archive":"../../etc/shadow"}}}`,
		"absolute archive":   `{"lockedFlake":"x","processes":{"web":{"kind":"docker-archive","archive":"/etc/shadow"}}}`,
		"not a store path":   `{"lockedFlake":"x","processes":{"web":{"kind":"closure","closure":[{"path":"/etc","narSize":1}]}}}`,
		"store path escape":  `{"lockedFlake":"x","processes":{"web":{"kind":"closure","closure":[{"path":"/nix/store/00000000000000000000000000000000-a/../../etc","narSize":1}]}}}`,
		"no processes":       `{"lockedFlake":"x","processes":{}}`,
		"another app's path": `{"lockedFlake":"x","processes":{"../other-app/web":{"kind":"docker-archive","archive":"web.tar"}}}`,
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

func TestReadManifestRefusesWhatIsNotASmallRegularFile(t *testing.T) {
	good := []byte(`{"lockedFlake":"x","unchanged":true}`)
	t.Run("a symlink", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(t.TempDir(), "elsewhere.json")
		if err := os.WriteFile(target, good, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, ManifestFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Fatalf("error %v, want a refusal of the symlink", err)
		}
	})
	t.Run("a FIFO", func(t *testing.T) {
		dir := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(dir, ManifestFile), 0o644); err != nil {
			t.Fatal(err)
		}
		// Nobody ever writes to the FIFO: a blocking open would hang here
		// until the test binary's timeout.
		if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("error %v, want a refusal of the FIFO", err)
		}
	})
	t.Run("a file over the cap", func(t *testing.T) {
		dir := t.TempDir()
		big := append([]byte(`{"lockedFlake":"x","unchanged":true}`), bytes.Repeat([]byte(" "), MaxManifestSize)...)
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), big, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "more than") {
			t.Fatalf("error %v, want a refusal of the size", err)
		}
	})
	t.Run("a small regular file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), good, 0o644); err != nil {
			t.Fatal(err)
		}
		if m, err := ReadManifest(dir); err != nil || !m.Unchanged {
			t.Fatalf("ReadManifest = %+v, %v", m, err)
		}
	})
}

func FuzzReadManifest(f *testing.F) {
	f.Add([]byte(`{"revision":"abc","lockedFlake":"x","processes":{"web":{"attribute":"a","kind":"closure","outPath":"/nix/store/00000000000000000000000000000000-a","closure":[{"path":"/nix/store/00000000000000000000000000000000-a","narSize":1}]}}}`))
	f.Add([]byte(`{"lockedFlake":"x","processes":{"web":{"kind":"docker-archive","archive":"web.tar"}}}`))
	f.Add([]byte(`{"lockedFlake":"x","unchanged":true}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := ReadManifest(dir)
		if err != nil {
			return
		}
		// Whatever is accepted names only files inside the workspace and
		// store paths, and has something to push unless it is unchanged.
		if len(m.Processes) == 0 && !m.Unchanged {
			t.Fatalf("accepted a manifest with nothing to push: %+v", m)
		}
		for name, p := range m.Processes {
			for _, rel := range []string{p.Archive, p.Nix2ContainerJSON} {
				if rel != "" && !filepath.IsLocal(rel) {
					t.Fatalf("process %q: accepted %q", name, rel)
				}
			}
			for _, sp := range p.Closure {
				if !storePathRE.MatchString(sp.Path) || strings.Contains(sp.Path, "/../") {
					t.Fatalf("process %q: accepted %q", name, sp.Path)
				}
			}
		}
	})
}

func TestStorePathOf(t *testing.T) {
	const sp = "/nix/store/00000000000000000000000000000000-a"
	for p, want := range map[string]string{
		sp:                       sp,
		sp + "/bin/x":            sp,
		sp + "/":                 "",
		sp + "/../../etc":        "",
		sp + "/./x":              "",
		sp + "/x\x00":            "",
		"/etc/passwd":            "",
		"/nix/store/short-a/bin": "",
	} {
		got, ok := StorePathOf(p)
		if got != want && ok || ok != (want != "") {
			t.Errorf("StorePathOf(%q) = %q, %v; want %q", p, got, ok, want)
		}
	}
}

func TestIsTarAndIsGzip(t *testing.T) {
	ustar := make([]byte, 512)
	copy(ustar[257:], "ustar")
	for name, tc := range map[string]struct {
		head        []byte
		tar, isGzip bool
	}{
		"a ustar header":          {ustar, true, false},
		"an end-of-archive block": {make([]byte, 512), true, false},
		"a short zero block":      {make([]byte, 100), false, false},
		"gzip":                    {[]byte{0x1f, 0x8b, 8}, false, true},
		"JSON":                    {[]byte(`{"a":1}`), false, false},
	} {
		if IsTar(tc.head) != tc.tar || IsGzip(tc.head) != tc.isGzip {
			t.Errorf("%s: IsTar %v, IsGzip %v", name, IsTar(tc.head), IsGzip(tc.head))
		}
	}
}

func TestCheckProcessTypes(t *testing.T) {
	want := []string{"web", "worker"}
	for name, tc := range map[string]struct {
		got     map[string]Image
		wantErr string
	}{
		"the same types":  {map[string]Image{"web": {}, "worker": {}}, ""},
		"an extra type":   {map[string]Image{"web": {}, "worker": {}, "release": {}}, `"release"`},
		"a missing type":  {map[string]Image{"web": {}}, `lacks process type "worker"`},
		"a swapped type":  {map[string]Image{"web": {}, "release": {}}, `lacks process type "worker"`},
		"no types at all": {nil, "lacks"},
	} {
		err := CheckProcessTypes("build result", tc.got, want)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want %q", name, err, tc.wantErr)
		}
	}
}

func TestFailureRoundTripAndWhatIsNotAFailure(t *testing.T) {
	f := &Failure{Failure: FailureUnauthorized, Message: "pushing to registry.heroku.com: UNAUTHORIZED: authentication required"}
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := ParseFailure(b); got == nil || *got != *f {
		t.Errorf("round trip: got %+v, want %+v", got, f)
	}
	if _, err := ParseResult(b); err == nil {
		t.Error("a failure was accepted as a result")
	}
	for name, in := range map[string]string{
		"a log tail":      "manager push: pushing to registry.heroku.com: UNAUTHORIZED",
		"a result":        `{"lockedFlake":"x","images":{"web":{"imageID":"` + digest + `","digest":"` + digest + `"}}}`,
		"an unknown kind": `{"failure":"Teapot","message":"x"}`,
		"no kind":         `{"message":"x"}`,
	} {
		if got := ParseFailure([]byte(in)); got != nil {
			t.Errorf("%s: read as a failure %+v", name, got)
		}
	}
}

func TestFailuresFitATerminationMessageWhateverTheirMessage(t *testing.T) {
	b, err := (&Failure{Failure: FailureUnauthorized, Message: strings.Repeat("\x01", 10*MaxResultSize)}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxResultSize {
		t.Errorf("encoded failure is %d bytes, over %d", len(b), MaxResultSize)
	}
	if ParseFailure(b) == nil {
		t.Error("a cut failure does not read back")
	}
}

func FuzzParseFailure(f *testing.F) {
	f.Add([]byte(`{"failure":"Unauthorized","message":"authentication required"}`))
	f.Add([]byte(`{"lockedFlake":"x","unchanged":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := ParseFailure(b); got != nil && got.Failure != FailureUnauthorized {
			t.Fatalf("accepted an unknown kind: %+v", got)
		}
	})
}

// TestTheLargestValidResultFits: whatever the push ends with, the result of
// the largest valid spec (16 process types of 30 characters, a 1024-byte
// locked ref, a 64-hex narHash revision) fits a termination message, and
// an image reads back from both its compact and its older object form.
func TestTheLargestValidResultFits(t *testing.T) {
	ref := "github:acme/shop?dir=app"
	for len(ref) < 1024 {
		ref += "&x=y<>"
	}
	types := make([]string, 16)
	for i := range types {
		types[i] = fmt.Sprintf("p%02d", i) + strings.Repeat("x", 27)
	}
	if err := CheckResultFits(strings.Repeat("f", 64), ref[:1024], types); err != nil {
		t.Fatal(err)
	}
	if err := CheckResultFits(strings.Repeat("f", 64), "path:/"+strings.Repeat(`\`, 1018), types); err == nil {
		t.Error("a result JSON escaping takes over the limit fits")
	}
	img := Image{ImageID: digest, Digest: "sha256:" + strings.Repeat("e", 64)}
	for _, form := range []string{`["` + img.ImageID[7:] + `","` + img.Digest[7:] + `"]`, `{"imageID":"` + img.ImageID + `","digest":"` + img.Digest + `"}`} {
		var got Image
		if err := json.Unmarshal([]byte(form), &got); err != nil || got != img {
			t.Errorf("%s reads as %+v, %v; want %+v", form, got, err, img)
		}
	}
}

func TestReuseFromRoundTripsAndRefusesWhatIsNotAPin(t *testing.T) {
	pins := map[string]string{"web": "sha256:" + strings.Repeat("a", 64), "worker": "sha256:" + strings.Repeat("b", 64)}
	got, err := ParseReuseFrom(FormatReuseFrom(pins))
	if err != nil || !maps.Equal(got, pins) {
		t.Errorf("round trip: %v, %v", got, err)
	}
	if got, err := ParseReuseFrom(""); got != nil || err != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"web", "web=latest", "../x=sha256:" + strings.Repeat("a", 64), "web=sha256:" + strings.Repeat("A", 64)} {
		if _, err := ParseReuseFrom(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestManifestRefusesAMalformedNarHash(t *testing.T) {
	sp := "/nix/store/" + strings.Repeat("a", 32) + "-x"
	for hash, ok := range map[string]bool{
		"": true, "sha256-" + strings.Repeat("A", 43) + "=": true,
		"sha256:" + strings.Repeat("0", 52): false, "md5-AAAA": false, "sha256-\"}": false,
	} {
		b, _ := json.Marshal(Manifest{LockedFlake: "x", Processes: map[string]ProcessOutput{"web": {Kind: KindClosure, Closure: []StorePath{{Path: sp, NarSize: 1, NarHash: hash}}}}})
		if _, err := ParseManifest(b); (err == nil) != ok {
			t.Errorf("NAR hash %q: %v", hash, err)
		}
	}
}
