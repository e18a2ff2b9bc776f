package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixhash"
)

// testRegistry is an in-process registry that counts blob uploads.
type testRegistry struct {
	host string

	mu       sync.Mutex
	uploaded []string // digests of completed blob uploads
	bytes    int64    // request body bytes of blob uploads
	hide     map[string]bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{hide: map[string]bool{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.URL.Path, "/blobs/") {
			r.mu.Lock()
			hidden := req.Method == http.MethodHead && r.hide[req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]]
			r.mu.Unlock()
			if hidden {
				w.WriteHeader(http.StatusNotFound)
				return
			}
		}
		if strings.Contains(req.URL.Path, "/blobs/uploads") {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			r.mu.Lock()
			r.bytes += int64(len(body))
			if d := req.URL.Query().Get("digest"); req.Method == http.MethodPut && d != "" {
				r.uploaded = append(r.uploaded, d)
			}
			r.mu.Unlock()
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.uploaded, r.bytes = nil, 0
}

func (r *testRegistry) uploads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.uploaded...)
}

// hideBlob makes HEAD requests for a blob answer 404.
func (r *testRegistry) hideBlob(d v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hide[d.String()] = true
}

// narHashOf is the NAR hash of store path sp under root, as `nix path-info`
// reports it, taken with go-nix's own NAR writer (not the push's).
func narHashOf(t testing.TB, root, sp string) string {
	t.Helper()
	h := sha256.New()
	if err := nar.DumpPath(h, filepath.Join(root, sp)); err != nil {
		t.Fatal(err)
	}
	return nixhash.MustNewHash(nixhash.SHA256, h.Sum(nil)).Format(nixhash.SRI, true)
}

// hash is a valid store path hash made from n.
func storePathFor(n int, name string) string {
	return fmt.Sprintf("/nix/store/%032d-%s", n, name)
}

type file struct {
	body string
	mode os.FileMode
	link string // a symlink when set
	dir  bool
}

// makeStorePath writes files (relative to the store path) under root.
func makeStorePath(t *testing.T, root, sp string, files map[string]file) {
	t.Helper()
	base := filepath.Join(root, sp)
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, f := range files {
		p := filepath.Join(base, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case f.link != "":
			err = os.Symlink(f.link, p)
		case f.dir:
			err = os.MkdirAll(p, 0o755)
		default:
			mode := f.mode
			if mode == 0 {
				mode = 0o644
			}
			err = os.WriteFile(p, []byte(f.body), mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func tarBytes(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layerEntry is what a test checks about one entry of a pulled layer.
type layerEntry struct {
	typ   byte
	mode  int64
	uid   int
	link  string
	body  string
	mtime int64
	uname string
}

func layerEntries(t *testing.T, l v1.Layer) ([]string, map[string]layerEntry) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	m := map[string]layerEntry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		m[h.Name] = layerEntry{typ: h.Typeflag, mode: h.Mode, uid: h.Uid, link: h.Linkname, body: string(b), mtime: h.ModTime.Unix(), uname: h.Uname}
	}
	return names, m
}

// checkHerokuImage checks the media types and platform Heroku requires.
func checkHerokuImage(t *testing.T, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 {
		t.Errorf("manifest media type %s", m.MediaType)
	}
	if m.Config.MediaType != types.DockerConfigJSON {
		t.Errorf("config media type %s", m.Config.MediaType)
	}
	for i, l := range m.Layers {
		if l.MediaType != types.DockerLayer {
			t.Errorf("layer %d media type %s", i, l.MediaType)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		t.Errorf("%d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(m.Layers))
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

type ioReadCloser = io.ReadCloser

func nopCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func gzipReader(b []byte) (io.Reader, error) { return gzip.NewReader(bytes.NewReader(b)) }
