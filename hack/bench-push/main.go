// Command bench-push compares herokunix's push of a Nix closure with the
// route people use today (write a docker-archive tarball of one layer per
// store path, then push it with go-containerregistry's tarball reader),
// cold and after the app's store path (the closure's leaf: nothing depends
// on it) changed, against an in-process registry. herokunix fits the
// closure into the default layer budget (image.DefaultLayers). It prints
// time, bytes and blobs uploaded for each, the targets of issue 13, and one
// machine-readable last line:
//
//	bench-push: paths=300 layers=32 cold_ratio=0.41 warm_ratio=0.03 warm_blobs=2 ...
//
//	go run ./hack/bench-push [-paths 300] [-mb 200]
package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/herokunix/herokunix/internal/artifact"
	"github.com/herokunix/herokunix/internal/image"
)

func main() {
	paths := flag.Int("paths", 300, "store paths in the closure")
	mb := flag.Int("mb", 200, "total size of the closure in MB")
	flag.Parse()
	if err := run(*paths, int64(*mb)<<20); err != nil {
		log.Fatal(err)
	}
}

// counter counts what clients upload to the registry.
type counter struct {
	bytes atomic.Int64
	blobs atomic.Int64
}

func (c *counter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads") {
			r.Body = &countingBody{ReadCloser: r.Body, n: &c.bytes}
			if r.Method == http.MethodPut && r.URL.Query().Get("digest") != "" {
				c.blobs.Add(1)
			}
		}
		h.ServeHTTP(w, r)
	})
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

type result struct {
	route, phase string
	d            time.Duration
	bytes, blobs int64
	note         string
}

func run(npaths int, total int64) error {
	dir, err := os.MkdirTemp("", "bench-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var c counter
	// The registry keeps blobs on disk so that memory stays bounded.
	blobDir := filepath.Join(dir, "registry")
	if err := os.Mkdir(blobDir, 0o755); err != nil {
		return err
	}
	srv := httptest.NewServer(c.wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(registry.NewDiskBlobHandler(blobDir)))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	ws := filepath.Join(dir, "workspace")
	closure, err := makeClosure(filepath.Join(ws, artifact.StoreRoot), npaths, total, 0)
	if err != nil {
		return err
	}
	fmt.Printf("closure: %d store paths, %d MB, GOMAXPROCS %d\n\n", npaths, total>>20, runtime.GOMAXPROCS(0))
	var results []result
	measure := func(route, phase, note string, f func() error) error {
		c.bytes.Store(0)
		c.blobs.Store(0)
		// Each phase starts with no dirty pages left by the one before
		// (the closure, a tarball): their writeback is no phase's cost.
		syscall.Sync()
		runtime.GC()
		start := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s %s: %w", route, phase, err)
		}
		results = append(results, result{route, phase, time.Since(start), c.bytes.Load(), c.blobs.Load(), note})
		return nil
	}
	// The controller pins the image each push made (status.images) for
	// the next one to reuse layers from.
	var reuseFrom map[string]string
	hkPush := func() error {
		if err := artifact.WriteManifest(ws, &artifact.Manifest{LockedFlake: "bench", Processes: map[string]artifact.ProcessOutput{
			"web": {Kind: artifact.KindClosure, OutPath: closure[0].Path, Closure: closure, Command: []string{"bin/app"}},
		}}); err != nil {
			return err
		}
		res, err := image.PushWorkspace(ctx, ws, host, "herokunix", image.PushOptions{Options: image.Options{TempDir: dir}, ReuseFrom: reuseFrom})
		if err != nil {
			return err
		}
		reuseFrom = map[string]string{"web": res.Images["web"].Digest}
		return nil
	}
	tarPath := filepath.Join(dir, "image.tar")
	tbWrite := func() error { return writeTarball(filepath.Join(ws, artifact.StoreRoot), closure, tarPath) }
	tbPush := func() error {
		img, err := tarball.ImageFromPath(tarPath, nil)
		if err != nil {
			return err
		}
		ref, err := name.NewTag(host + "/tarball/web:latest")
		if err != nil {
			return err
		}
		return remote.Write(ref, img, remote.WithContext(ctx))
	}

	if err := measure("herokunix", "cold push", "build layers + push", hkPush); err != nil {
		return err
	}
	if err := measure("tarball", "cold write", "docker-archive written", tbWrite); err != nil {
		return err
	}
	if err := measure("tarball", "cold push", "tarball.ImageFromPath + remote.Write", tbPush); err != nil {
		return err
	}

	// The app changes: a new hash with new content, as a rebuild of the
	// app's source gives. Nothing depends on it, so nothing else changes.
	changed := 0
	newPath, err := changePath(filepath.Join(ws, artifact.StoreRoot), closure, changed)
	if err != nil {
		return err
	}
	closure[changed] = newPath
	if err := measure("herokunix", "warm push", "the app's store path changed", hkPush); err != nil {
		return err
	}
	if err := measure("tarball", "warm write", "whole tarball rewritten", tbWrite); err != nil {
		return err
	}
	if err := measure("tarball", "warm push", "", tbPush); err != nil {
		return err
	}

	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\tphase\ttime\tuploaded\tblobs\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\t%d\t  %s\n", r.route, r.phase, r.d.Round(time.Millisecond), float64(r.bytes)/(1<<20), r.blobs, r.note)
	}
	tw.Flush()
	get := func(route, phase string) result {
		for _, r := range results {
			if r.route == route && r.phase == phase {
				return r
			}
		}
		return result{}
	}
	hkCold, hkWarm := get("herokunix", "cold push"), get("herokunix", "warm push")
	tbCold := get("tarball", "cold write").d + get("tarball", "cold push").d
	tbWarm := get("tarball", "warm write").d + get("tarball", "warm push").d
	coldRatio := hkCold.d.Seconds() / tbCold.Seconds()
	warmRatio := hkWarm.d.Seconds() / tbWarm.Seconds()
	ref, err := name.NewTag(host + "/herokunix/web:latest")
	if err != nil {
		return err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Printf("\nlayers: herokunix %d (budget %d), tarball route %d\n", len(layers), image.DefaultLayers, len(closure))
	fmt.Printf("cold: herokunix %s, tarball route %s (write+push): ratio %.3f (target <= 0.5: %s)\n",
		hkCold.d.Round(time.Millisecond), tbCold.Round(time.Millisecond), coldRatio, verdict(coldRatio <= 0.5))
	fmt.Printf("warm: herokunix %s, tarball route %s (write+push): ratio %.3f (target <= 0.05: %s)\n",
		hkWarm.d.Round(time.Millisecond), tbWarm.Round(time.Millisecond), warmRatio, verdict(warmRatio <= 0.05))
	fmt.Printf("warm upload: herokunix %.2f MB in %d blobs (target: one layer + config: %s), tarball route %.2f MB in %d blobs\n",
		float64(hkWarm.bytes)/(1<<20), hkWarm.blobs, verdict(hkWarm.blobs == 2), float64(get("tarball", "warm push").bytes)/(1<<20), get("tarball", "warm push").blobs)
	fmt.Printf("bench-push: paths=%d layers=%d cold_ratio=%.3f warm_ratio=%.3f warm_blobs=%d cold_bytes=%d warm_bytes=%d tarball_cold_bytes=%d tarball_warm_bytes=%d\n",
		len(closure), len(layers), coldRatio, warmRatio, hkWarm.blobs, hkCold.bytes, hkWarm.bytes,
		get("tarball", "cold push").bytes, get("tarball", "warm push").bytes)
	return nil
}

// makeClosure writes npaths store paths of deterministic content totalling
// about total bytes, shaped like a real closure: path 0 is the app (small,
// with bin/app; nothing depends on it), paths 1-9 are what it uses directly,
// and every other path depends on a deeper one and on the three at the
// bottom (a libc, a runtime, locales), which are the largest.
func makeClosure(root string, npaths int, total int64, salt uint64) ([]artifact.StorePath, error) {
	const appSize = 256 << 10
	// Sizes grow geometrically towards the bottom of the graph.
	weights := make([]float64, npaths)
	var sum float64
	for i := 1; i < npaths; i++ {
		weights[i] = 1 / (1 + float64(npaths-1-i)/6)
		sum += weights[i]
	}
	paths := make([]string, npaths)
	sizes := make([]int64, npaths)
	for i := range npaths {
		sizes[i] = appSize
		if i > 0 {
			sizes[i] = int64(float64(total-appSize) * weights[i] / sum)
		}
		sp, err := writeStorePath(root, i, salt, sizes[i])
		if err != nil {
			return nil, err
		}
		paths[i] = sp
	}
	closure := make([]artifact.StorePath, npaths)
	for i := range npaths {
		var refs []string
		if i == 0 {
			refs = append(refs, paths[1:min(npaths, 10)]...)
		} else {
			for _, j := range []int{i + 1 + i%7, npaths - 1, npaths - 2, npaths - 3} {
				if j > i && j < npaths {
					refs = append(refs, paths[j])
				}
			}
		}
		narHash, err := narHashOf(root, paths[i])
		if err != nil {
			return nil, err
		}
		closure[i] = artifact.StorePath{Path: paths[i], NarSize: sizes[i], NarHash: narHash, References: refs}
	}
	return closure, nil
}

// narHashOf is the NAR hash `nix path-info` would report for store path sp
// under root (go-nix's NAR writer, not the push's).
func narHashOf(root, sp string) (string, error) {
	h := sha256.New()
	if err := nar.DumpPath(h, filepath.Join(root, sp)); err != nil {
		return "", err
	}
	return nixhash.MustNewHash(nixhash.SHA256, h.Sum(nil)).Format(nixhash.SRI, true), nil
}

func writeStorePath(root string, i int, salt uint64, size int64) (string, error) {
	sp := fmt.Sprintf("/nix/store/%032d-pkg%d", uint64(i)+salt*1000, i)
	base := filepath.Join(root, sp)
	if err := os.MkdirAll(filepath.Join(base, "bin"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(base, "bin", "app"), []byte("#!app\n"), 0o755); err != nil {
		return "", err
	}
	rng := rand.New(rand.NewPCG(uint64(i), salt))
	const fileSize = 1 << 20
	for n := 0; int64(n)*fileSize < size; n++ {
		sz := min(fileSize, size-int64(n)*fileSize)
		if err := writeData(filepath.Join(base, "lib", fmt.Sprintf("part%03d", n)), rng, sz); err != nil {
			return "", err
		}
	}
	return sp, nil
}

// writeData writes half random bytes and half text, in 4 KiB chunks, so
// that it compresses about 2:1 like binaries do.
func writeData(p string, rng *rand.Rand, size int64) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	text := []byte(strings.Repeat("the quick brown fox jumps over the lazy dog ", 100))
	for written := int64(0); written < size; {
		if rng.IntN(2) == 0 {
			for j := range chunk {
				chunk[j] = byte(rng.Uint32())
			}
		} else {
			copy(chunk, text[rng.IntN(len(text)-len(chunk)):])
		}
		n := min(int64(len(chunk)), size-written)
		if _, err := f.Write(chunk[:n]); err != nil {
			return err
		}
		written += n
	}
	return nil
}

func changePath(root string, closure []artifact.StorePath, i int) (artifact.StorePath, error) {
	sp, err := writeStorePath(root, i, 7, closure[i].NarSize)
	if err != nil {
		return artifact.StorePath{}, err
	}
	narHash, err := narHashOf(root, sp)
	if err != nil {
		return artifact.StorePath{}, err
	}
	return artifact.StorePath{Path: sp, NarSize: closure[i].NarSize, NarHash: narHash, References: closure[i].References}, os.RemoveAll(filepath.Join(root, closure[i].Path))
}

// writeTarball is today's route: a docker-archive with one layer per store
// path, written with go-containerregistry's tarball.Write.
func writeTarball(root string, closure []artifact.StorePath, out string) error {
	var adds []mutate.Addendum
	for _, sp := range closure {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return tarStorePath(root, sp.Path), nil })
		if err != nil {
			return err
		}
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: types.DockerLayer})
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.DockerManifestSchema2), adds...)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{closure[0].Path + "/bin/app"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tag, err := name.NewTag("bench/web:latest")
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, img)
}

// tarStorePath streams a plain tar of one store path.
func tarStorePath(root, sp string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := filepath.WalkDir(filepath.Join(root, sp), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			hdr, err := tar.FileInfoHeader(fi, "")
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			hdr.Name = rel
			hdr.ModTime = time.Unix(1, 0)
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(tw, f)
				return err
			}
			return nil
		})
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}
