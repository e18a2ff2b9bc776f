package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ociSource is an OCI-typed image with two layers, as a tool other than
// herokunix might make it.
func ociSource(t *testing.T) v1.Image {
	t.Helper()
	var adds []mutate.Addendum
	for _, body := range []string{"first", "second"} {
		b := tarBytes(t, reg("app/"+body, body), tarEntry{hdr: tar.Header{Name: "app/link", Typeflag: tar.TypeSymlink, Linkname: "/nix/store/x"}})
		l, err := tarball.LayerFromOpener(func() (ioReadCloser, error) { return nopCloser(b), nil }, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: types.OCILayer})
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.Append(img, adds...)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Cmd = []string{"/app/first"}
	cf.Architecture, cf.OS = "amd64", "linux"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestDockerArchiveIsPushedAsDockerSchema2(t *testing.T) {
	src := ociSource(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "image.tar")
	tag, _ := name.NewTag("example/app:latest")
	if err := tarball.WriteToFile(plain, tag, src); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(plain)
	gz := filepath.Join(dir, "image.tar.gz")
	if err := os.WriteFile(gz, gzipBytes(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	srcCfg, _ := src.ConfigFile()
	r := newTestRegistry(t)
	for _, p := range []string{plain, gz} {
		t.Run(filepath.Base(p), func(t *testing.T) {
			img, err := FromDockerArchive(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Push(context.Background(), map[string]v1.Image{"web": img}, r.host, "docker-app"); err != nil {
				t.Fatal(err)
			}
			pulled, err := remote.Image(mustRef(t, r.host+"/docker-app/web:latest"))
			if err != nil {
				t.Fatal(err)
			}
			checkHerokuImage(t, pulled)
			cf, _ := pulled.ConfigFile()
			if cf.Config.Cmd[0] != "/app/first" {
				t.Errorf("cmd %q", cf.Config.Cmd)
			}
			for i, d := range cf.RootFS.DiffIDs {
				if d != srcCfg.RootFS.DiffIDs[i] {
					t.Errorf("layer %d diff ID %s, source %s", i, d, srcCfg.RootFS.DiffIDs[i])
				}
			}
			layers, _ := pulled.Layers()
			_, entries := layerEntries(t, layers[1])
			if entries["app/second"].body != "second" {
				t.Errorf("layer 1: %+v", entries)
			}
		})
	}
}

// archive builds a docker-archive whose one layer holds layer.
func archive(t testing.TB, layer []byte, extra ...tarEntry) []byte {
	t.Helper()
	diffID, _, _ := v1.SHA256(bytes.NewReader(layer))
	if len(layer) > 2 && layer[0] == 0x1f {
		zr, _ := gzipReader(layer)
		diffID, _, _ = v1.SHA256(zr)
	}
	cfg, _ := json.Marshal(v1.ConfigFile{Architecture: "amd64", OS: "linux", RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}}})
	manifest := `[{"Config":"config.json","RepoTags":["x:latest"],"Layers":["layer.tar"]}]`
	entries := append([]tarEntry{reg("manifest.json", manifest), reg("config.json", string(cfg)), reg("layer.tar", string(layer))}, extra...)
	return tarBytes(t, entries...)
}

func TestDockerArchiveSafety(t *testing.T) {
	ok := tarBytes(t, reg("app/ok", "ok"))
	lim := Options{MaxBytes: 1 << 20, MaxEntries: 100, MaxLayers: 127}
	hdr := func(name string, typ byte, link string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: typ, Linkname: link, Mode: 0o644}}
	}
	many := make([]tarEntry, 120)
	for i := range many {
		many[i] = reg(strings.Repeat("x", i+1), "")
	}
	for _, tc := range []struct {
		name    string
		archive []byte
		lim     Options
		wantErr string
	}{
		{"a plain archive is read", archive(t, ok), lim, ""},
		{"a gzip archive with gzip layers is read", gzipBytes(t, archive(t, gzipBytes(t, ok))), lim, ""},
		{"a layer name climbing out with .. is refused", archive(t, tarBytes(t, reg("app/../../etc/passwd", "x"))), lim, "climbs out"},
		{"an absolute layer name is refused", archive(t, tarBytes(t, reg("/etc/passwd", "x"))), lim, "absolute name"},
		{"a symlink climbing out is refused", archive(t, tarBytes(t, hdr("app/l", tar.TypeSymlink, "../../etc"))), lim, "climbs out of the image root"},
		{"an absolute symlink stays in the image", archive(t, tarBytes(t, hdr("app/l", tar.TypeSymlink, "/nix/store/x"))), lim, ""},
		{"a hard link out of the layer is refused", archive(t, tarBytes(t, hdr("app/h", tar.TypeLink, "../etc/shadow"))), lim, "hard link"},
		{"a character device is refused", archive(t, tarBytes(t, hdr("dev/null", tar.TypeChar, ""))), lim, "character device"},
		{"a block device is refused", archive(t, tarBytes(t, hdr("dev/sda", tar.TypeBlock, ""))), lim, "block device"},
		{"a FIFO is refused", archive(t, tarBytes(t, hdr("app/fifo", tar.TypeFifo, ""))), lim, "FIFO"},
		{"an outer name climbing out is refused", archive(t, ok, reg("../evil", "x")), lim, "climbs out"},
		{"an outer symlink out of the archive is refused", archive(t, ok, hdr("evil", tar.TypeSymlink, "../../etc/passwd")), lim, "links out of the archive"},
		{"an outer device is refused", archive(t, ok, hdr("dev", tar.TypeChar, "")), lim, "does not hold"},
		{"too many entries are refused", archive(t, tarBytes(t, many...)), lim, "more than 100 entries"},
		{"too many bytes are refused", archive(t, tarBytes(t, reg("big", strings.Repeat("a", 2<<20)))), lim, "more than 1048576 bytes"},
		{"a gzip bomb is refused", archive(t, gzipBytes(t, tarBytes(t, reg("big", strings.Repeat("a", 4<<20))))), lim, "more than 1048576 bytes"},
		{"a layer that is not a tar is refused", archiveWithLayerName(t, "config.json"), lim, "neither a tar"},
		{"garbage is refused", []byte("not an archive at all"), lim, "reading archive"},
		{"an archive without manifest.json is refused", tarBytes(t, reg("x", "y")), lim, `no "manifest.json"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readDockerArchive(bytes.NewReader(tc.archive), int64(len(tc.archive)), withTemp(tc.lim, t))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	t.Run("more layers than the budget are merged, not refused", func(t *testing.T) {
		a := twoLayerArchive(t, ok)
		img, err := readDockerArchive(bytes.NewReader(a), int64(len(a)), Options{TempDir: t.TempDir(), MaxLayers: 1, MaxBytes: 1 << 20, MaxEntries: 100})
		if err != nil {
			t.Fatal(err)
		}
		if layers, _ := img.Layers(); len(layers) != 1 {
			t.Fatalf("%d layers, want 1", len(layers))
		}
	})
}

func archiveWithLayerName(t *testing.T, layer string) []byte {
	cfg, _ := json.Marshal(v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}}}})
	return tarBytes(t, reg("manifest.json", `[{"Config":"config.json","Layers":["`+layer+`"]}]`), reg("config.json", string(cfg)))
}

func twoLayerArchive(t *testing.T, layer []byte) []byte {
	d, _, _ := v1.SHA256(bytes.NewReader(layer))
	cfg, _ := json.Marshal(v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{d, d}}})
	return tarBytes(t, reg("manifest.json", `[{"Config":"c.json","Layers":["l.tar","l.tar"]}]`), reg("c.json", string(cfg)), reg("l.tar", string(layer)))
}

func FuzzReadDockerArchive(f *testing.F) {
	ok := tarBytes(f, reg("app/ok", "ok"), tarEntry{hdr: tar.Header{Name: "app/l", Typeflag: tar.TypeSymlink, Linkname: "ok"}})
	f.Add(archive(f, ok))
	f.Add(gzipBytes(f, archive(f, gzipBytes(f, ok))))
	f.Add(archive(f, tarBytes(f, reg("../x", "x"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Options{MaxBytes: 8 << 20, MaxEntries: 1000, MaxLayers: 8}
		img, err := readDockerArchive(bytes.NewReader(data), int64(len(data)), withTemp(lim, t))
		if err != nil {
			return
		}
		// What is accepted must be a well-formed image.
		if _, err := img.Manifest(); err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			if err := checkLayerTar(rc, &budget{lim: lim}); err != nil {
				t.Fatalf("accepted a layer that fails the checks: %v", err)
			}
			rc.Close()
		}
	})
}

// withTemp is opts with its layers spooled into a directory of the test.
func withTemp(opts Options, t testing.TB) Options {
	opts.TempDir = t.TempDir()
	return opts
}
