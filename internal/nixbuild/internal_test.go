package nixbuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/herokunix/herokunix/internal/artifact"
)

const (
	storeA = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a"
	storeB = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b-1.0"
)

func TestParsePathInfo(t *testing.T) {
	// The same NAR hash as Nix 2.8 prints it (SRI), as older Nix printed
	// it (base32 with a prefix), and in base16: each is read as SRI.
	const (
		sri    = "sha256-P4wLvbdgHrPK06TlJ5l7sw9VaXNIQIM0yWWGlI/o1sM="
		base32 = "sha256:1hynx27r91k5r4s86h28fdlma3xkgfcjgrd4sg5b67k0nyyhp31z"
		base16 = "sha256:3f8c0bbdb7601eb3cad3a4e527997bb30f55697348408334c96586948fe8d6c3"
	)
	want := []artifact.StorePath{{Path: storeA, NarSize: 120}, {Path: storeB, NarSize: 4096}}
	withRefs := []artifact.StorePath{{Path: storeA, NarSize: 120, References: []string{storeB}}, {Path: storeB, NarSize: 4096, NarHash: sri}}
	hashed := []artifact.StorePath{{Path: storeA, NarSize: 120, NarHash: sri}, {Path: storeB, NarSize: 4096, NarHash: sri}}
	for _, tc := range []struct {
		name, json string
		want       []artifact.StorePath
		wantErr    bool
	}{
		{name: "Nix 2.8's array, sorted by path", want: withRefs,
			json: `[{"path":"` + storeB + `","narHash":"` + sri + `","narSize":4096,"references":[]},
			        {"path":"` + storeA + `","narSize":120,"references":["` + storeB + `"],"ultimate":true}]`},
		{name: "newer Nix's object keyed by path", want: want,
			json: `{"` + storeA + `":{"narSize":120,"references":[]},"` + storeB + `":{"narSize":4096}}`},
		{name: "NAR hashes in other encodings", want: hashed,
			json: `{"` + storeA + `":{"narSize":120,"narHash":"` + base32 + `"},"` + storeB + `":{"narSize":4096,"narHash":"` + base16 + `"}}`},
		{name: "a NAR hash that is not SHA-256", wantErr: true, json: `[{"path":"` + storeA + `","narSize":1,"narHash":"sha256-x"}]`},
		{name: "a duplicate listed once", want: want[:1],
			json: `[{"path":"` + storeA + `","narSize":120},{"path":"` + storeA + `","narSize":120}]`},
		{name: "an invalid path in the array format", wantErr: true, json: `[{"path":"` + storeA + `","valid":false}]`},
		{name: "an invalid path in the object format", wantErr: true, json: `{"` + storeA + `":null}`},
		{name: "a reference outside the store", wantErr: true, json: `[{"path":"` + storeA + `","narSize":1,"references":["/etc"]}]`},
		{name: "a path outside the store", wantErr: true, json: `[{"path":"/etc/passwd","narSize":1}]`},
		{name: "a subpath", wantErr: true, json: `[{"path":"` + storeA + `/../../etc","narSize":1}]`},
		{name: "no size", wantErr: true, json: `[{"path":"` + storeA + `"}]`},
		{name: "a negative size", wantErr: true, json: `{"` + storeA + `":{"narSize":-1}}`},
		{name: "a key and path that disagree", wantErr: true, json: `{"` + storeA + `":{"path":"` + storeB + `","narSize":1}}`},
		{name: "an empty list", wantErr: true, json: `[]`},
		{name: "nothing", wantErr: true, json: ` `},
		{name: "not JSON", wantErr: true, json: `error: oops`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePathInfo([]byte(tc.json))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, func(a, b artifact.StorePath) bool {
				return a.Path == b.Path && a.NarSize == b.NarSize && a.NarHash == b.NarHash && slices.Equal(a.References, b.References)
			}) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParsePathInfo(f *testing.F) {
	f.Add([]byte(`[{"path":"` + storeA + `","narSize":120}]`))
	f.Add([]byte(`{"` + storeA + `":{"narSize":120},"` + storeB + `":null}`))
	f.Add([]byte(`[{"path":"` + storeA + `/x","narSize":1e3}]`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[{"path":"` + storeA + `","narSize":1,"narHash":"sha256:1hynx27r91k5r4s86h28fdlma3xkgfcjgrd4sg5b67k0nyyhp31z"}]`))
	f.Add([]byte(`[{"path":"` + storeA + `","narSize":1,"narHash":"sha512-AAAA"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParsePathInfo(b)
		if err != nil {
			return
		}
		if len(got) == 0 {
			t.Fatal("no error and no paths")
		}
		for i, p := range got {
			if !artifact.IsStorePath(p.Path) || p.NarSize <= 0 {
				t.Fatalf("accepted %+v", p)
			}
			if i > 0 && got[i-1].Path >= p.Path {
				t.Fatalf("not sorted and unique: %v", got)
			}
		}
	})
}

func FuzzValidateFlakeRef(f *testing.F) {
	for _, s := range []string{
		"github:herokunix/example", "path:/tmp/x", "git+https://example.com/a.git?ref=main&rev=abc",
		"", "-L", "a b", "x\x00", "github:a/b#c", strings.Repeat("a", 1025), "\u00a0", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if err := ValidateFlakeRef(ref); err != nil {
			return
		}
		if ref == "" || len(ref) > MaxFlakeRefLen || !utf8.ValidString(ref) ||
			strings.HasPrefix(ref, "-") || strings.Contains(ref, "#") ||
			strings.IndexFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			t.Fatalf("accepted %q", ref)
		}
	})
}

func TestValidateAttribute(t *testing.T) {
	for attr, ok := range map[string]bool{
		"packages.x86_64-linux.default": true,
		`packages.x86_64-linux."web"`:   true,
		"":                              false,
		"-L":                            false,
		"--impure":                      false,
		"a b":                           false,
		"a\nb":                          false,
		"a#b":                           false,
	} {
		if err := ValidateAttribute(attr); (err == nil) != ok {
			t.Errorf("ValidateAttribute(%q) = %v", attr, err)
		}
	}
}

func TestDetect(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: 2}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("[]"))
	tw.Close()
	var gzBuf bytes.Buffer
	zw := gzip.NewWriter(&gzBuf)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	n2c := fmt.Sprintf(`{"version":1,"image-config":{},"layers":[{"paths":[{"path":%q}]}]}`, storeA+"/bin")

	for _, tc := range []struct {
		name string
		path string
		want detected
	}{
		{"a tarball is a docker-archive", write("a.tar", tarBuf.Bytes(), 0o444), detected{typ: outputArchive}},
		{"a gzip file is a compressed docker-archive", write("a.tar.gz", gzBuf.Bytes(), 0o444), detected{typ: outputArchive, gzip: true}},
		{"an executable script streams an image", write("stream", []byte("#!/bin/sh\nexec cat x\n"), 0o555), detected{typ: outputStream}},
		{"a script that is not executable is a package", write("script", []byte("#!/bin/sh\n"), 0o444), detected{typ: outputPackage}},
		{"nix2container JSON", write("image.json", []byte("\n  "+n2c), 0o444), detected{typ: outputNix2Container}},
		{"other JSON is a package", write("other.json", []byte(`{"version":2,"layers":[]}`), 0o444), detected{typ: outputPackage}},
		{"an empty file is a package", write("empty", nil, 0o444), detected{typ: outputPackage}},
		{"a directory is a package", dir, detected{typ: outputPackage}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := detect(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("detect = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTailKeepsTheLastLines(t *testing.T) {
	var tb tailBuffer
	for i := range 5000 {
		fmt.Fprintf(&tb, "line %d\n", i)
	}
	got := tb.Tail(20)
	lines := strings.Split(got, "\n")
	if len(lines) != 20 || lines[0] != "line 4980" || lines[19] != "line 4999" {
		t.Errorf("tail = %q", got)
	}
	tb.Write(bytes.Repeat([]byte("x"), 3*tailKeep))
	if len(tb.buf) != tailKeep {
		t.Errorf("kept %d bytes, want %d", len(tb.buf), tailKeep)
	}
}

func TestCopyStorePathKeepsSymlinksAndModes(t *testing.T) {
	src := filepath.Join(t.TempDir(), "pkg")
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.WriteFile(filepath.Join(src, "bin", "prog"), []byte("#!/bin/sh\n"), 0o555)
	os.WriteFile(filepath.Join(src, "data"), []byte("data"), 0o444)
	os.Symlink("../data", filepath.Join(src, "bin", "link"))
	os.Symlink(storeA, filepath.Join(src, "dep"))
	os.Chmod(filepath.Join(src, "bin"), 0o555)
	os.Chmod(src, 0o555)
	t.Cleanup(func() { RemoveAllWritable(src) })

	dst := filepath.Join(t.TempDir(), "root", "nix", "store", "pkg")
	t.Cleanup(func() { RemoveAllWritable(dst) })
	if err := copyStorePath(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		".":        os.ModeDir | 0o555,
		"bin":      os.ModeDir | 0o555,
		"bin/prog": 0o555,
		"data":     0o444,
	} {
		fi, err := os.Lstat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	for name, want := range map[string]string{"bin/link": "../data", "dep": storeA} {
		got, err := os.Readlink(filepath.Join(dst, name))
		if err != nil || got != want {
			t.Errorf("%s: link %q (%v), want %q", name, got, err, want)
		}
	}
	if _, err := os.Lstat(dst + ".partial"); !os.IsNotExist(err) {
		t.Errorf("temporary copy left behind: %v", err)
	}
}

func TestGlobalArgs(t *testing.T) {
	for _, tc := range []struct {
		opts Nix
		want []string
	}{
		{Nix{Offline: true, Substituters: []string{"https://c"}},
			[]string{"--extra-experimental-features", "nix-command flakes", "--option", "sandbox", "false", "--option", "substituters", ""}},
		{Nix{Substituters: []string{"https://a", "https://b"}, TrustedPublicKeys: []string{"a:1"}},
			[]string{"--extra-experimental-features", "nix-command flakes", "--option", "sandbox", "false",
				"--option", "extra-substituters", "https://a https://b", "--option", "extra-trusted-public-keys", "a:1"}},
		{Nix{Sandbox: true, Offline: true},
			[]string{"--extra-experimental-features", "nix-command flakes", "--option", "substituters", ""}},
		{Nix{Sandbox: true, Offline: true, Store: "/cache", RequireSigs: true, TrustedPublicKeys: []string{"a:1"}},
			[]string{"--extra-experimental-features", "nix-command flakes", "--store", "/cache", "--option", "require-sigs", "true",
				"--option", "substituters", "", "--option", "extra-trusted-public-keys", "a:1"}},
	} {
		if got := tc.opts.globalArgs(); !slices.Equal(got, tc.want) {
			t.Errorf("globalArgs(%+v) = %q, want %q", tc.opts, got, tc.want)
		}
	}
}

func TestNixGetsNoCredentialsFromTheEnvironment(t *testing.T) {
	t.Setenv("HEROKU_API_KEY", "secret")
	t.Setenv("KUBECONFIG", "/root/.kube/config")
	t.Setenv("NIX_REMOTE", "daemon")
	env := Nix{NixConfFile: "/etc/extra.conf"}.env()
	for _, kv := range env {
		if strings.HasPrefix(kv, "HEROKU_API_KEY=") || strings.HasPrefix(kv, "KUBECONFIG=") {
			t.Errorf("Nix would see %s", kv)
		}
	}
	if !slices.Contains(env, "NIX_REMOTE=daemon") || !slices.Contains(env, "NIX_USER_CONF_FILES=/etc/extra.conf") {
		t.Errorf("Nix's own settings were dropped: %v", env)
	}
}

// TestTextPathIsNixs: a derivation Nix 2.8 wrote, with its references,
// is found at the path textPath computes; another content is not.
func TestTextPathIsNixs(t *testing.T) {
	const drv = `Derive([("out","/nix/store/ggbqg8lqjwj75wznkv03h0x2bjr2in0j-a","","")],[],[],"x86_64-linux","/bin/sh",["-c","echo a > $out"],[("builder","/bin/sh"),("name","a"),("out","/nix/store/ggbqg8lqjwj75wznkv03h0x2bjr2in0j-a"),("system","x86_64-linux")])`
	const want = "/nix/store/h0qb3wmwhkx4nsnnlp5janwnw1bz9ng8-a.drv"
	if got := textPath("a.drv", []byte(drv), nil); got != want {
		t.Errorf("textPath = %s, want %s", got, want)
	}
	const drvB = `Derive([("out","/nix/store/8dxl0xyxnrw4c2yyzv4qpjjsg2czrgdw-b","","")],[("/nix/store/h0qb3wmwhkx4nsnnlp5janwnw1bz9ng8-a.drv",["out"])],[],"x86_64-linux","/bin/sh",["-c","echo $a > $out"],[("a","/nix/store/ggbqg8lqjwj75wznkv03h0x2bjr2in0j-a"),("builder","/bin/sh"),("name","b"),("out","/nix/store/8dxl0xyxnrw4c2yyzv4qpjjsg2czrgdw-b"),("system","x86_64-linux")])`
	if got := textPath("b.drv", []byte(drvB), []string{want}); got != "/nix/store/lsh2fhyp4xxqa99ak4ivfgs05ni8n6g9-b.drv" {
		t.Errorf("textPath of a derivation with a reference = %s", got)
	}
	if got := textPath("a.drv", []byte(drv+" "), nil); got == want {
		t.Errorf("another content has the same path")
	}
	if got := textPath("a.drv", []byte(drv), []string{want}); got == want {
		t.Errorf("other references give the same path")
	}
}

// A path is vouched for by a signature or a content address, in the shape
// Nix 2.8 prints them (ca a string, signatures absent when none) and the
// shape newer Nix does (path-info JSON version 2: ca an object or null,
// signatures always a list).
func TestRegistrationsTellVouchedPathsInEitherShape(t *testing.T) {
	const storeLocal = "/nix/store/cccccccccccccccccccccccccccccccc-app"
	for _, tc := range []struct {
		name, json string
		want       map[string]bool
	}{
		{"nix 2.8", `[{"path":"` + storeA + `","narSize":8,"ca":"fixed:r:sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"},
			{"path":"` + storeB + `","narSize":8,"signatures":["cache-1:c2ln"]},
			{"path":"` + storeLocal + `","narSize":8,"ultimate":true}]`,
			map[string]bool{storeA: true, storeB: true, storeLocal: false}},
		{"path-info JSON version 2", `{"` + storeA + `":{"narSize":8,"ca":{"method":"nar","hash":"sha256-AAAA"},"signatures":[]},
			"` + storeB + `":{"narSize":8,"ca":null,"signatures":["cache-1:c2ln"]},
			"` + storeLocal + `":{"narSize":8,"ca":null,"signatures":[],"ultimate":true}}`,
			map[string]bool{storeA: true, storeB: true, storeLocal: false}},
	} {
		regs, err := registrations([]byte(tc.json))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for p, want := range tc.want {
			if got := regs[p].vouched; got != want {
				t.Errorf("%s: %s vouched = %v, want %v", tc.name, p, got, want)
			}
		}
	}
}
