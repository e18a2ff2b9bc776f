package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Images load builds. No registry is reachable, so they are built here and
// imported into the node's containerd; pods find them by these names.
const (
	// ManagerImage is config/manager's image at the tag config/manager pins;
	// build Jobs run it too (--tools-image defaults to it).
	ManagerImage = "ghcr.io/herokunix/herokunix:dev"
	// NixImage stands in for nixos/nix: see docs/build-image.md.
	NixImage = "herokunix.local/nix:2.8"
)

// file is one entry of an image layer.
type file struct {
	mode    int64
	content []byte // nil: a directory
	link    string // a symlink to link
}

// layerImage is an image with one layer of files, from scratch.
func layerImage(files map[string]file, cfg v1.Config) (v1.Image, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(1, 0)
	for _, n := range names {
		f := files[n]
		h := &tar.Header{Name: strings.TrimPrefix(n, "/"), Mode: f.mode, ModTime: epoch}
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		case f.content == nil:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.content))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.content); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	return mutate.ConfigFile(img, cf)
}

// goBinary builds a static binary of pkg (in the repo) for the image.
func (c *cluster) goBinary(pkg string, ldflags string) ([]byte, error) {
	out := filepath.Join(c.path("images"), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w "+ldflags, "-o", out, pkg)
	cmd.Dir = c.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

// importImage writes img as a docker archive and imports it into the
// node's containerd, in the namespace the CRI uses.
func (c *cluster) importImage(ctx context.Context, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.path("images"), 0o755); err != nil {
		return err
	}
	tarPath := c.path("images", strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	f, err := os.Create(tarPath)
	if err != nil {
		return err
	}
	if err := tarball.Write(tag, img, f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", ref, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "ctr", "--address", c.path("containerd.sock"), "-n", "k8s.io", "images", "import", tarPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("importing %s: %w\n%s", ref, err, out)
	}
	logf("imported %s", ref)
	return os.Remove(tarPath)
}

func (c *cluster) importPause(ctx context.Context) error {
	bin, err := c.goBinary("./hack/cluster/pause", "")
	if err != nil {
		return err
	}
	img, err := layerImage(map[string]file{"/pause": {mode: 0o555, content: bin}},
		v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
	if err != nil {
		return err
	}
	return c.importImage(ctx, PauseImage, img)
}

// load builds the manager and Nix images and imports them.
func (c *cluster) load(ctx context.Context) error {
	if !c.running() {
		return fmt.Errorf("the cluster is not up: run `go run ./hack/cluster up` first")
	}
	img, err := c.managerImage()
	if err != nil {
		return err
	}
	if err := c.importImage(ctx, ManagerImage, img); err != nil {
		return err
	}
	img, err = NixImageFromHost()
	if err != nil {
		return err
	}
	return c.importImage(ctx, NixImage, img)
}

// managerImage is what `ko build` would make of cmd/manager: the static
// binary on an empty base, as uid 65532, with the CA bundle for HTTPS.
func (c *cluster) managerImage() (v1.Image, error) {
	// HEROKUNIX_MANAGER_BINARY: a manager built already (e.g. by make
	// build); a dynamically linked one brings the libraries it loads.
	var bin []byte
	var err error
	files := map[string]file{}
	if p := os.Getenv("HEROKUNIX_MANAGER_BINARY"); p != "" {
		if bin, err = os.ReadFile(p); err != nil {
			return nil, err
		}
		if err := addLibraries(files, p); err != nil {
			return nil, err
		}
	} else if bin, err = c.goBinary("./cmd/manager", "-X main.Version=dev"); err != nil {
		return nil, err
	}
	for p, f := range map[string]file{
		"/manager": {mode: 0o555, content: bin},
		"/tmp":     {mode: 0o1777},
		"/etc":     {mode: 0o755},
		"/etc/passwd": {mode: 0o644, content: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
	} {
		files[p] = f
	}
	if ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		files["/etc/ssl"] = file{mode: 0o755}
		files["/etc/ssl/certs"] = file{mode: 0o755}
		files["/etc/ssl/certs/ca-certificates.crt"] = file{mode: 0o644, content: ca}
	}
	return layerImage(files, v1.Config{Entrypoint: []string{"/manager"}, User: "65532:65532",
		Env: []string{"PATH=/"}})
}
