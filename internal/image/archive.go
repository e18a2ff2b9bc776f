package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/herokunix/herokunix/internal/artifact"
)

// maxJSON bounds a JSON document read from an archive (manifest, config).
const maxJSON = 16 << 20

// FromDockerArchive reads a docker-archive (as `docker save`,
// dockerTools.buildImage/buildLayeredImage or a streamLayeredImage script
// write it), plain or gzip-compressed.
//
// The archive is untrusted: it is read once in full before anything else,
// and refused if any name in it or in its layers is absolute or climbs out
// with "..", a symlink climbs out of the tree, an entry is a device, FIFO or
// sparse file, or it is larger than the limits. Layers already
// gzip-compressed are pushed as they are; others are compressed once. An
// image of more layers than opts.MaxLayers has its lowest layers merged
// into one (mergeToBudget).
// A gzip-compressed archive is decompressed once into a temporary file.
func FromDockerArchive(p string, opts Options) (v1.Image, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("opening docker-archive: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening docker-archive: %w", err)
	}
	img, err := readDockerArchive(f, fi.Size(), opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("docker-archive %s: %w", p, err)
	}
	// f stays open for the image's layers; it is closed when collected.
	return img, nil
}

// readDockerArchive reads a docker-archive, plain or gzip-compressed, from
// ra. The returned image reads its layers from ra (or from a temporary copy
// for a compressed archive).
func readDockerArchive(ra io.ReaderAt, size int64, opts Options) (v1.Image, error) {
	opts = opts.orDefault()
	b := &budget{lim: opts}
	tmpDir := opts.TempDir
	head := make([]byte, 2)
	if n, _ := ra.ReadAt(head, 0); artifact.IsGzip(head[:n]) {
		tmp, n, err := gunzipToTemp(io.NewSectionReader(ra, 0, size), b, tmpDir)
		if err != nil {
			return nil, err
		}
		ra, size = tmp, n
	} else if err := b.takeBytes(size); err != nil {
		return nil, err
	}
	return readTarArchive(io.NewSectionReader(ra, 0, size), b, tmpDir)
}

func gunzipToTemp(r io.Reader, b *budget, tmpDir string) (*os.File, int64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, 0, fmt.Errorf("decompressing: %w", err)
	}
	f, err := os.CreateTemp(tmpDir, "herokunix-archive-*")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 1<<20)
	n, err := io.Copy(bw, &budgetReader{r: zr, b: b})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("decompressing: %w", err)
	}
	return f, n, nil
}

// archiveEntry is one entry of the outer archive.
type archiveEntry struct {
	typ    byte
	link   string // cleaned target, for links
	off    int64
	size   int64
	layer  bool // a tar stream, checked
	gz     bool // gzip-compressed
	digest v1.Hash
	diffID v1.Hash
}

func readTarArchive(sr *io.SectionReader, b *budget, tmpDir string) (v1.Image, error) {
	entries := map[string]*archiveEntry{}
	cr := &countingReader{r: sr}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := b.takeEntry(); err != nil {
			return nil, err
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if _, dup := entries[name]; dup {
			return nil, fmt.Errorf("archive holds %q twice", name)
		}
		e := &archiveEntry{typ: hdr.Typeflag, off: cr.n, size: hdr.Size}
		entries[name] = e
		switch hdr.Typeflag {
		case tar.TypeReg:
			if err := checkArchiveFile(tr, name, e, b); err != nil {
				return nil, err
			}
			if cr.n != e.off+e.size {
				return nil, fmt.Errorf("archive entry %q is not stored contiguously (sparse?)", name)
			}
		case tar.TypeDir:
		case tar.TypeSymlink, tar.TypeLink:
			target := hdr.Linkname
			if hdr.Typeflag == tar.TypeSymlink {
				if strings.HasPrefix(target, "/") {
					return nil, fmt.Errorf("archive entry %q is a symlink to an absolute path", name)
				}
				target = path.Join(path.Dir(name), target)
			}
			if e.link, err = entryName(target); err != nil {
				return nil, fmt.Errorf("archive entry %q links out of the archive: %w", name, err)
			}
		default:
			return nil, fmt.Errorf("archive entry %q is of type %q, which a docker-archive does not hold", name, hdr.Typeflag)
		}
	}

	manifestEntry, err := resolve(entries, "manifest.json")
	if err != nil {
		return nil, err
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := readJSON(sr, manifestEntry, &manifest); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(manifest) == 0 {
		return nil, errors.New("manifest.json lists no image")
	}
	// A docker-archive may hold several images (several tags, or `docker
	// save a b`). The tools herokunix reads write one; it takes the first.
	m := manifest[0]
	ce, err := resolve(entries, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg v1.ConfigFile
	if err := readJSON(sr, ce, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config lists %d layers, manifest.json %d", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}

	layers := make([]v1.Layer, len(m.Layers))
	var g errgroup.Group
	g.SetLimit(max(1, min(4, len(m.Layers))))
	for i, ln := range m.Layers {
		le, err := resolve(entries, ln)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if !le.layer {
			return nil, fmt.Errorf("layer %d (%s) is neither a tar nor a gzip-compressed tar", i, ln)
		}
		if le.diffID != cfg.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("layer %d (%s) has diff ID %s, but the config says %s", i, ln, le.diffID, cfg.RootFS.DiffIDs[i])
		}
		section := io.NewSectionReader(sr, le.off, le.size)
		if le.gz {
			layers[i] = &sectionLayer{r: section, digest: le.digest, diffID: le.diffID}
			continue
		}
		g.Go(func() error {
			l, err := spool(tmpDir, func(w io.Writer) error {
				_, err := io.Copy(w, section)
				return err
			})
			layers[i] = l
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("compressing layers: %w", err)
	}
	if layers, err = mergeToBudget(&cfg, layers, b.lim.MaxLayers, tmpDir); err != nil {
		return nil, fmt.Errorf("fitting %d layers into %d: %w", len(m.Layers), b.lim.MaxLayers, err)
	}
	// The archive's config is the build's: a layer record in it would be
	// trusted by the next build once herokunix pushed it.
	delete(cfg.Config.Labels, LayersLabel)
	return assemble(cfg, layers, nil)
}

// checkArchiveFile reads one regular file of the outer archive. A tar or
// gzip-compressed tar is checked as a layer and hashed; anything else is
// skipped (JSON within a size bound).
func checkArchiveFile(r io.Reader, name string, e *archiveEntry, b *budget) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(512)
	digest := sha256.New()
	src := io.TeeReader(br, digest)
	switch {
	case artifact.IsGzip(head):
		zr, err := gzip.NewReader(src)
		if err != nil {
			return fmt.Errorf("layer %q: %w", name, err)
		}
		e.gz = true
		if err := checkLayerStream(zr, name, e, b, true); err != nil {
			return err
		}
	case artifact.IsTar(head):
		if err := checkLayerStream(src, name, e, b, false); err != nil {
			return err
		}
	default:
		if strings.HasSuffix(name, ".json") && e.size > maxJSON {
			return fmt.Errorf("%q is %d bytes, more than %d", name, e.size, maxJSON)
		}
		_, err := io.Copy(io.Discard, br)
		return err
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("layer %q: %w", name, err)
	}
	e.layer, e.digest = true, sum(digest)
	if !e.gz {
		e.diffID = e.digest
	}
	return nil
}

// checkLayerStream checks the layer tar in r, hashing it into e.diffID.
// counted says whether its bytes still need counting against b (they do when
// decompressed; an uncompressed layer was counted with the archive).
func checkLayerStream(r io.Reader, name string, e *archiveEntry, b *budget, counted bool) error {
	diffID := sha256.New()
	var src io.Reader = io.TeeReader(r, diffID)
	if counted {
		src = &budgetReader{r: src, b: b}
	}
	if err := checkLayerTar(src, b); err != nil {
		return fmt.Errorf("layer %q: %w", name, err)
	}
	// Trailing bytes after the end-of-archive blocks belong to the layer.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("layer %q: %w", name, err)
	}
	if counted {
		e.diffID = sum(diffID)
	}
	return nil
}

// checkLayerTar reads a layer's tar stream to its end and refuses what no
// image herokunix pushes may hold: names that are absolute or climb out with
// "..", relative symlinks that climb out of the root, hard links to names
// outside the layer, device, FIFO and sparse entries, and more entries than
// the budget allows. Absolute symlinks are allowed: in a container they
// resolve inside its root (Nix's /nix/store/… links are absolute).
func checkLayerTar(r io.Reader, b *budget) error {
	return eachTarEntry(r, func(_ int, hdr *tar.Header, _ io.Reader) error {
		if err := b.takeEntry(); err != nil {
			return err
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeDir:
		case tar.TypeSymlink:
			if hdr.Linkname == "" {
				return fmt.Errorf("symlink %q has no target", name)
			}
			if !strings.HasPrefix(hdr.Linkname, "/") {
				if _, err := entryName(path.Join(path.Dir(name), hdr.Linkname)); err != nil {
					return fmt.Errorf("symlink %q -> %q climbs out of the image root", name, hdr.Linkname)
				}
			}
		case tar.TypeLink:
			if _, err := entryName(hdr.Linkname); err != nil {
				return fmt.Errorf("hard link %q -> %q: %w", name, hdr.Linkname, err)
			}
		default:
			return fmt.Errorf("%q is of type %s, which herokunix does not put in an image", name, typeName(hdr.Typeflag))
		}
		return nil
	})
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("%q", t)
}

// entryName cleans an archive name and refuses an absolute one or one that
// climbs out with "..".
func entryName(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("empty name")
	}
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("absolute name %q", raw)
	}
	name := path.Clean(raw)
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("name %q climbs out of the archive (\"..\")", raw)
	}
	return name, nil
}

// resolve finds a regular file of the archive by name, following links.
func resolve(entries map[string]*archiveEntry, raw string) (*archiveEntry, error) {
	name, err := entryName(raw)
	if err != nil {
		return nil, err
	}
	for range 16 {
		e, ok := entries[name]
		if !ok {
			return nil, fmt.Errorf("archive has no %q", name)
		}
		switch e.typ {
		case tar.TypeReg:
			return e, nil
		case tar.TypeSymlink, tar.TypeLink:
			name = e.link
		default:
			return nil, fmt.Errorf("%q is not a file", name)
		}
	}
	return nil, fmt.Errorf("%q: too many links", raw)
}

func readJSON(ra io.ReaderAt, e *archiveEntry, v any) error {
	if e.size > maxJSON {
		return fmt.Errorf("%d bytes, more than %d", e.size, maxJSON)
	}
	return json.NewDecoder(io.NewSectionReader(ra, e.off, e.size)).Decode(v)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// budgetReader counts what it reads against a budget.
type budgetReader struct {
	r io.Reader
	b *budget
}

func (br *budgetReader) Read(p []byte) (int, error) {
	n, err := br.r.Read(p)
	if n > 0 {
		if berr := br.b.takeBytes(int64(n)); berr != nil {
			return n, berr
		}
	}
	return n, err
}
