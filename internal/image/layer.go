package image

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// gzipLevel is part of every layer digest herokunix makes: changing it (or
// the compressor, klauspost/compress, which is several times faster than
// the standard library's at this level) changes the digest of every layer
// built afterwards. The fastest level keeps a cold push short; Nix store
// paths are mostly binaries, which higher levels shrink little more.
const gzipLevel = gzip.BestSpeed

// spool runs write, which writes an uncompressed tar stream, and keeps its
// gzip-compressed form in an unlinked temporary file in dir ("" for
// os.TempDir), so that its digest is known before the push and the push
// uploads those same bytes without reading or compressing the sources again.
// The file goes away when the layer is garbage collected (or the process
// exits).
func spool(dir string, write func(io.Writer) error) (*sectionLayer, error) {
	f, err := os.CreateTemp(dir, "herokunix-layer-*")
	if err != nil {
		return nil, fmt.Errorf("creating layer spool file: %w", err)
	}
	// Unlinked now; the open file keeps the data until it is closed.
	os.Remove(f.Name())
	l, err := spoolTo(f, write)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func spoolTo(f *os.File, write func(io.Writer) error) (*sectionLayer, error) {
	bw := bufio.NewWriterSize(f, 1<<20)
	digest := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(bw, digest)}
	gz, err := gzip.NewWriterLevel(cw, gzipLevel)
	if err != nil {
		return nil, err
	}
	diffID := sha256.New()
	if err := write(io.MultiWriter(gz, diffID)); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing layer spool file: %w", err)
	}
	return &sectionLayer{r: io.NewSectionReader(f, 0, cw.n), digest: sum(digest), diffID: sum(diffID)}, nil
}

func sum(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// sectionLayer is a gzip-compressed layer stored in part of a file: a layer
// herokunix compressed into a spool file, or one already compressed in a
// docker-archive or a prebuilt nix2container tarball. Its bytes are uploaded
// as they are.
type sectionLayer struct {
	r      *io.SectionReader
	digest v1.Hash
	diffID v1.Hash
}

var _ v1.Layer = (*sectionLayer)(nil)

func (l *sectionLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *sectionLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *sectionLayer) Size() (int64, error)                { return l.r.Size(), nil }
func (l *sectionLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
func (l *sectionLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(l.r, 0, l.r.Size())), nil
}
func (l *sectionLayer) Uncompressed() (io.ReadCloser, error) {
	return gzip.NewReader(io.NewSectionReader(l.r, 0, l.r.Size()))
}

// reusedLayer is a layer of the previous image in the registry, described by
// what the previous image's manifest and config say about it. Nothing is
// fetched unless Compressed or Uncompressed is called, which a push to the
// registry that has the blob never does.
type reusedLayer struct {
	from   v1.Layer
	digest v1.Hash
	diffID v1.Hash
	size   int64
}

var _ v1.Layer = (*reusedLayer)(nil)

func (l *reusedLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *reusedLayer) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l *reusedLayer) Size() (int64, error)                 { return l.size, nil }
func (l *reusedLayer) MediaType() (types.MediaType, error)  { return types.DockerLayer, nil }
func (l *reusedLayer) Compressed() (io.ReadCloser, error)   { return l.from.Compressed() }
func (l *reusedLayer) Uncompressed() (io.ReadCloser, error) { return l.from.Uncompressed() }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
