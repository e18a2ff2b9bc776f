// Package artifact holds the three small documents that cross process
// boundaries during a build: the BuildRequest the controller hands to
// `manager build` (one JSON argument), the Manifest that `manager build`
// leaves in the shared workspace for `manager push`, and the Result that
// `manager push` writes to its termination message for the controller to
// read. It also holds the syntax both sides share: store paths and the
// signatures of tar and gzip streams.
//
// The Manifest and the Result are untrusted when read back (they come from a
// pod that ran user code), so the readers bound and validate what they parse.
package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
)

// ManifestFile is the name of the manifest inside a workspace directory.
const ManifestFile = "build.json"

// StoreRoot is the directory inside a workspace that holds copied closures,
// as a store rooted there would: store paths live at
// <workspace>/root/nix/store/….
const StoreRoot = "root"

// Kind says what a flake output is and so how it becomes an image.
type Kind string

const (
	// KindDockerArchive is a docker-archive tarball (plain or gzip), as made by
	// dockerTools.buildImage/buildLayeredImage, or the output of a
	// streamLayeredImage script after it was run to a file.
	KindDockerArchive Kind = "docker-archive"
	// KindNix2Container is nix2container's image JSON; its layers are made
	// from store paths copied into the workspace.
	KindNix2Container Kind = "nix2container"
	// KindClosure is any other package: its closure, grouped into layers by
	// how many paths depend on each (docs/layers.md).
	KindClosure Kind = "closure"
)

// StorePath is one path of a closure with its NAR size, NAR hash and the
// store paths it references (from `nix path-info`). The references let the
// push keep paths that change at different rates in different layers; the
// NAR hash is what the build claims the path holds, which the push checks
// against what it reads before it records a layer for reuse.
type StorePath struct {
	Path    string `json:"path"`
	NarSize int64  `json:"narSize"`
	// NarHash is the SHA-256 of the path's NAR serialisation in SRI form
	// (sha256-<base64>), or empty if the build did not say.
	NarHash    string   `json:"narHash,omitempty"`
	References []string `json:"references,omitempty"`
}

// narHashRE is the one spelling of a NAR hash in a manifest: SHA-256 in SRI
// form, as nixbuild writes it.
var narHashRE = regexp.MustCompile(`^sha256-[A-Za-z0-9+/]{43}=$`)

// IsNarHash reports whether h is a NAR hash as a manifest spells it.
func IsNarHash(h string) bool { return narHashRE.MatchString(h) }

// ProcessOutput is what the build exported for one Heroku process type.
type ProcessOutput struct {
	// Attribute is the flake attribute that was built.
	Attribute string `json:"attribute"`
	Kind      Kind   `json:"kind"`
	// OutPath is the store path `nix build` produced.
	OutPath string `json:"outPath"`
	// Archive is a docker-archive file, relative to the workspace (KindDockerArchive).
	Archive string `json:"archive,omitempty"`
	// Nix2ContainerJSON is the image JSON file, relative to the workspace (KindNix2Container).
	Nix2ContainerJSON string `json:"nix2containerJSON,omitempty"`
	// Closure lists the store paths copied under StoreRoot (KindClosure and KindNix2Container).
	Closure []StorePath `json:"closure,omitempty"`
	// Command is the process's entrypoint for closure mode (spec.processes[].command).
	Command []string `json:"command,omitempty"`
}

// Manifest is what `manager build` hands to `manager push`.
type Manifest struct {
	Revision    string                   `json:"revision,omitempty"`
	LockedFlake string                   `json:"lockedFlake"`
	Processes   map[string]ProcessOutput `json:"processes"`
	// Unchanged reports a refresh that found the flake still locked to the
	// revision already deployed: nothing was built and nothing is pushed.
	Unchanged bool `json:"unchanged,omitempty"`
}

// WriteManifest writes m into the workspace directory.
func WriteManifest(workspace string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding build manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(workspace, ManifestFile), b, 0o644); err != nil {
		return fmt.Errorf("writing build manifest: %w", err)
	}
	return nil
}

// MaxManifestSize bounds the manifest ReadManifest accepts: room for
// closures of many thousands of store paths.
const MaxManifestSize = 16 << 20

// ReadManifest reads and validates the manifest in a workspace directory.
// The build that wrote it ran user code, so the file must be a regular file
// of at most MaxManifestSize bytes: a symlink is refused (not followed), and
// a FIFO or device is refused without blocking on it.
func ReadManifest(workspace string) (*Manifest, error) {
	p := filepath.Join(workspace, ManifestFile)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("reading build manifest: %s is a symlink", ManifestFile)
		}
		return nil, fmt.Errorf("reading build manifest: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading build manifest: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("reading build manifest: %s is a %s, not a regular file", ManifestFile, fi.Mode().Type())
	}
	if fi.Size() > MaxManifestSize {
		return nil, fmt.Errorf("build manifest is %d bytes, more than %d", fi.Size(), MaxManifestSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading build manifest: %w", err)
	}
	return ParseManifest(b)
}

// ParseManifest parses and validates a manifest.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("build manifest is %d bytes, more than %d", len(b), MaxManifestSize)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing build manifest: %w", err)
	}
	if len(m.Processes) == 0 && !m.Unchanged {
		return nil, errors.New("build manifest lists no processes")
	}
	for name, p := range m.Processes {
		if err := ValidateProcessType(name); err != nil {
			return nil, fmt.Errorf("build manifest: %w", err)
		}
		for _, rel := range []string{p.Archive, p.Nix2ContainerJSON} {
			if rel != "" && !filepath.IsLocal(rel) {
				return nil, fmt.Errorf("build manifest: process %q names a file outside the workspace: %q", name, rel)
			}
		}
		for _, sp := range p.Closure {
			if !IsStorePath(sp.Path) {
				return nil, fmt.Errorf("build manifest: process %q lists %q, which is not a store path", name, sp.Path)
			}
			if sp.NarHash != "" && !IsNarHash(sp.NarHash) {
				return nil, fmt.Errorf("build manifest: process %q: %s has a malformed NAR hash", name, sp.Path)
			}
			for _, r := range sp.References {
				if !IsStorePath(r) {
					return nil, fmt.Errorf("build manifest: process %q: %s references %q, which is not a store path", name, sp.Path, r)
				}
			}
		}
	}
	return &m, nil
}

// processTypeRE matches the process types a build accepts; they name files
// in the workspace and repositories in the registry.
var processTypeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

// ValidateProcessType refuses a process type that could not name a file in
// the workspace or a repository under the app (no "/", no "..").
func ValidateProcessType(name string) error {
	if !processTypeRE.MatchString(name) {
		return fmt.Errorf("process type %q is not a valid name (letters, digits, '_' and '-', at most 63)", name)
	}
	return nil
}

// CheckProcessTypes refuses a document from a build whose process types
// are not exactly want (the build request's): none extra, none missing.
func CheckProcessTypes[V any](what string, got map[string]V, want []string) error {
	for _, name := range want {
		if _, ok := got[name]; !ok {
			return fmt.Errorf("%s lacks process type %q", what, name)
		}
	}
	if len(got) != len(want) {
		for name := range got {
			if !slices.Contains(want, name) {
				return fmt.Errorf("%s has process type %q, which the build request does not", what, name)
			}
		}
		return fmt.Errorf("%s lists %d process types, the build request %d", what, len(got), len(want))
	}
	return nil
}

// storePathRE is the one spelling of a top-level Nix store path; every
// other store-path check (StorePathOf, and through it nix2container and
// image) builds on IsStorePath.
var storePathRE = regexp.MustCompile(`^/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+$`)

// IsStorePath reports whether p is a top-level Nix store path (no subpath).
func IsStorePath(p string) bool { return storePathRE.MatchString(p) && !strings.Contains(p, "/../") }

// StorePathOf returns the top-level store path that p is or is inside,
// refusing a p that is not clean (no "..", "." or doubled or trailing
// slashes) or holds a NUL byte.
func StorePathOf(p string) (string, bool) {
	const store = "/nix/store/"
	if !strings.HasPrefix(p, store) || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return "", false
	}
	name, _, _ := strings.Cut(p[len(store):], "/")
	sp := store + name
	return sp, IsStorePath(sp)
}

// IsGzip reports whether head starts a gzip stream.
func IsGzip(head []byte) bool { return bytes.HasPrefix(head, []byte{0x1f, 0x8b}) }

// IsTar reports whether head starts a tar archive: a header with the ustar
// magic (POSIX, pax or GNU), or an all-zero 512-byte end-of-archive block (an
// empty archive, as an empty layer is).
func IsTar(head []byte) bool {
	if len(head) >= 262 && string(head[257:262]) == "ustar" {
		return true
	}
	if len(head) < 512 {
		return false
	}
	for _, c := range head[:512] {
		if c != 0 {
			return false
		}
	}
	return true
}

// Image identifies one pushed image. ImageID is the config digest, which is
// what Heroku's docker-releases API wants; Digest is the manifest digest.
//
// In JSON an Image is the pair [imageID, digest] of bare sha256 hex: with 16
// process types the object form ({"imageID":"sha256:…","digest":"sha256:…"})
// alone took 3.2 KiB of the 4 KiB termination message. The object form is
// still read, for a push container of an older manager.
type Image struct {
	ImageID string `json:"imageID"`
	Digest  string `json:"digest"`
}

const sha256Prefix = "sha256:"

// MarshalJSON writes the compact pair form.
func (i Image) MarshalJSON() ([]byte, error) {
	if !digestRE.MatchString(i.ImageID) || !digestRE.MatchString(i.Digest) {
		return nil, fmt.Errorf("image %s@%s: want sha256 digests", i.ImageID, i.Digest)
	}
	return json.Marshal([2]string{strings.TrimPrefix(i.ImageID, sha256Prefix), strings.TrimPrefix(i.Digest, sha256Prefix)})
}

// UnmarshalJSON reads the pair form, or the object form of older pushes.
func (i *Image) UnmarshalJSON(b []byte) error {
	var pair [2]string
	if err := json.Unmarshal(b, &pair); err == nil {
		*i = Image{ImageID: sha256Prefix + pair[0], Digest: sha256Prefix + pair[1]}
		return nil
	}
	type object Image // without the methods
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*i = Image(o)
	return nil
}

// Result is what `manager push` reports (as the push container's
// termination message, which Kubernetes caps at 4 KiB). Its size is bounded
// by the spec: a revision of at most 64 hex digits, a locked flake ref of at
// most 1024 bytes (nixbuild refuses longer ones), at most 16 process types
// of at most 30 characters with two fixed-size digests each, and two
// numbers. CheckResultFits refuses, before anything is pushed, the rare
// locked ref whose JSON escaping would still overflow.
type Result struct {
	Revision    string           `json:"revision,omitempty"`
	LockedFlake string           `json:"lockedFlake"`
	Images      map[string]Image `json:"images,omitempty"`
	// Unchanged: see Manifest.Unchanged.
	Unchanged bool `json:"unchanged,omitempty"`
	// PushedBytes and SkippedBlobs say what the push uploaded and what the
	// registry had already (for metrics).
	PushedBytes  int64 `json:"pushedBytes,omitempty"`
	SkippedBlobs int   `json:"skippedBlobs,omitempty"`
}

// MaxResultSize is the kubelet's cap on a termination message.
const MaxResultSize = 4096

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Encode returns the JSON form of r, refusing one that would not fit in a
// termination message. '&', '<' and '>' (common in flake refs' queries)
// stay as they are rather than taking six bytes each.
func (r *Result) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encoding build result: %w", err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > MaxResultSize {
		return nil, fmt.Errorf("build result is %d bytes, over the %d-byte termination message limit", len(b), MaxResultSize)
	}
	return b, nil
}

// CheckResultFits says whether the Result of a push of these process types
// for this revision and locked flake ref would fit in a termination
// message, whatever digests and counts the push ends with. The push checks
// it before uploading anything, so that an overflow fails early with a
// clear error instead of after every image was pushed.
func CheckResultFits(revision, lockedFlake string, processTypes []string) error {
	worst := Result{Revision: revision, LockedFlake: lockedFlake, Images: make(map[string]Image, len(processTypes)),
		PushedBytes: math.MaxInt64, SkippedBlobs: math.MaxInt}
	d := sha256Prefix + strings.Repeat("f", 64)
	for _, pt := range processTypes {
		worst.Images[pt] = Image{ImageID: d, Digest: d}
	}
	if _, err := worst.Encode(); err != nil {
		return fmt.Errorf("the push's result would not fit (locked flake ref %d bytes, %d process types): %w", len(lockedFlake), len(processTypes), err)
	}
	return nil
}

// ParseResult parses and validates a Result read back from a pod.
func ParseResult(b []byte) (*Result, error) {
	if len(b) > MaxResultSize {
		return nil, fmt.Errorf("build result is %d bytes, over %d", len(b), MaxResultSize)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parsing build result: %w", err)
	}
	if r.LockedFlake == "" {
		return nil, errors.New("build result has no lockedFlake")
	}
	if len(r.Images) == 0 && !r.Unchanged {
		return nil, errors.New("build result has no images")
	}
	for name, img := range r.Images {
		if err := ValidateProcessType(name); err != nil {
			return nil, fmt.Errorf("build result: %w", err)
		}
		if !digestRE.MatchString(img.ImageID) || !digestRE.MatchString(img.Digest) {
			return nil, fmt.Errorf("build result: process %q has a malformed digest", name)
		}
	}
	return &r, nil
}

// FailureKind names a push failure the controller must tell apart from a
// failed build.
type FailureKind string

// FailureUnauthorized: the registry refused the Heroku key (401
// UNAUTHORIZED, which Heroku's registry also answers for a repository the
// key cannot reach). Rebuilding cannot help; the credentials must change.
const FailureUnauthorized FailureKind = "Unauthorized"

// Failure is what `manager push` writes to its termination message instead
// of a Result when it fails for a reason the controller reports on its own
// (a bad key is a credentials problem, not a broken build). Any other
// failure leaves the message to the container's log.
type Failure struct {
	Failure FailureKind `json:"failure"`
	Message string      `json:"message"`
}

// maxFailureMessage keeps an encoded Failure inside a termination message
// even if JSON escapes every byte (six bytes each).
const maxFailureMessage = 600

// Encode returns the JSON form of f, its message cut to fit a termination
// message.
func (f *Failure) Encode() ([]byte, error) {
	c := *f
	if len(c.Message) > maxFailureMessage {
		c.Message = c.Message[:maxFailureMessage] + "…"
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encoding push failure: %w", err)
	}
	return b, nil
}

// ParseFailure reads a Failure back from a termination message. It returns
// nil (not an error) for anything else: a log tail, a Result, or a kind
// this controller does not know.
func ParseFailure(b []byte) *Failure {
	if len(b) > MaxResultSize {
		return nil
	}
	var f Failure
	if json.Unmarshal(b, &f) != nil {
		return nil
	}
	switch f.Failure {
	case FailureUnauthorized:
		return &f
	}
	return nil
}

// FormatReuseFrom writes the images a push may reuse layers from (process
// type to manifest digest) as `manager push --reuse-from` takes them:
// type=digest pairs, comma-separated, sorted.
func FormatReuseFrom(pins map[string]string) string {
	pairs := make([]string, 0, len(pins))
	for _, pt := range slices.Sorted(maps.Keys(pins)) {
		pairs = append(pairs, pt+"="+pins[pt])
	}
	return strings.Join(pairs, ",")
}

// ParseReuseFrom reads what FormatReuseFrom wrote; nil for "".
func ParseReuseFrom(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	pins := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		pt, d, ok := strings.Cut(pair, "=")
		if !ok || ValidateProcessType(pt) != nil || !digestRE.MatchString(d) {
			return nil, fmt.Errorf("reuse-from %q: want type=sha256:<hex> pairs", pair)
		}
		pins[pt] = d
	}
	return pins, nil
}

// BuildRequest is what one build does: which flake, which outputs, with
// which options. The controller passes it to `manager build` as one JSON
// argument, so user input never goes through a shell.
type BuildRequest struct {
	Flake             string                  `json:"flake"`
	Processes         map[string]BuildProcess `json:"processes"`
	Substituters      []string                `json:"substituters,omitempty"`
	TrustedPublicKeys []string                `json:"trustedPublicKeys,omitempty"`
	// SkipIfRevision makes the build stop after resolving when the flake
	// still locks to this revision: a refresh of a moving ref that found
	// nothing new. It is a Manifest.Revision from before: a git rev, or the
	// hex narHash of a source without one (a tarball).
	SkipIfRevision string `json:"skipIfRevision,omitempty"`
}

// BuildProcess is one process type's flake output.
type BuildProcess struct {
	Attribute string   `json:"attribute"`
	Command   []string `json:"command,omitempty"`
	// Kind overrides detection when set.
	Kind Kind `json:"kind,omitempty"`
}
