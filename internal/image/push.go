package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/herokunix/herokunix/internal/artifact"
)

// Tag is the tag Heroku releases from.
const Tag = "latest"

// pushJobs is how many blobs a push checks or uploads at once.
const pushJobs = 8

// Push pushes each process type's image to
// <registryHost>/<app>/<type>:latest, all at once with remote.MultiWrite,
// which uploads layers in parallel and skips the blobs the registry already
// has. An image over CeilingLayers is refused. It returns, per process type, the image ID (config digest, what
// Heroku releases) and the manifest digest. A loopback registryHost
// (localhost, 127.0.0.1) is reached over plain HTTP.
func Push(ctx context.Context, images map[string]v1.Image, registryHost, app string, opts ...remote.Option) (map[string]artifact.Image, error) {
	return push(ctx, images, registryHost, app, nil, opts)
}

func reference(registryHost, app, processType string, nameOpts []name.Option) (name.Tag, error) {
	t, err := name.NewTag(fmt.Sprintf("%s/%s/%s:%s", registryHost, app, processType, Tag), append([]name.Option{name.StrictValidation}, nameOpts...)...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image name for app %q process %q: %w", app, processType, err)
	}
	return t, nil
}

func push(ctx context.Context, images map[string]v1.Image, registryHost, app string, nameOpts []name.Option, opts []remote.Option) (map[string]artifact.Image, error) {
	if len(images) == 0 {
		return nil, errors.New("no images to push")
	}
	todo := make(map[name.Reference]remote.Taggable, len(images))
	out := make(map[string]artifact.Image, len(images))
	for pt, img := range images {
		ref, err := reference(registryHost, app, pt, nameOpts)
		if err != nil {
			return nil, err
		}
		id, err := img.ConfigName()
		if err != nil {
			return nil, fmt.Errorf("process %q: %w", pt, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("process %q: %w", pt, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("process %q: %w", pt, err)
		}
		if len(m.Layers) > CeilingLayers {
			return nil, fmt.Errorf("process %q: image has %d layers; Heroku boots no more than %d", pt, len(m.Layers), CeilingLayers)
		}
		todo[ref] = img
		out[pt] = artifact.Image{ImageID: id.String(), Digest: d.String()}
	}
	// Most of a warm push is HEAD requests for blobs the registry has:
	// more at once than remote's default of 4 (the caller's options win).
	opts = append([]remote.Option{remote.WithJobs(pushJobs)}, append(slices.Clone(opts), remote.WithContext(ctx))...)
	if err := remote.MultiWrite(todo, opts...); err != nil {
		return nil, fmt.Errorf("pushing to %s: %w", registryHost, err)
	}
	return out, nil
}

// PushOptions tune PushWorkspace.
type PushOptions struct {
	// Options say how every process's image is made.
	Options
	// Remote are options for every registry request (auth, …). Set the
	// transport with Transport: the push wraps it to count what it sends.
	Remote []remote.Option
	// Transport is the HTTP transport (default remote.DefaultTransport).
	Transport http.RoundTripper
	// Insecure reaches the registry over plain HTTP (local and test
	// registries).
	Insecure bool
	// Progress, when set, receives one line per process type saying how
	// its image was made.
	Progress io.Writer
	// Processes, when set, are the build request's process types: a
	// manifest that lists any other set is refused, since the build that
	// wrote it ran user code.
	Processes []string
	// ReuseFrom is, per process type, the manifest digest of the image
	// herokunix pushed for it last (the resource's status.images, pinned in
	// the cluster). Layers are reused only from that image, fetched by that
	// digest: whatever else sits at <app>/<type>:latest (anyone with the
	// key can push there) is ignored. A type without one is built in full.
	ReuseFrom map[string]string
}

// PushWorkspace makes an image for every process of the build manifest in
// workspace and pushes them all. For closure and nix2container outputs it
// first fetches the image herokunix pushed last for the process type
// (opts.ReuseFrom; none is fine) so that layers made from unchanged store
// paths are reused without reading or compressing them again. A manifest
// saying Unchanged (a refresh that found nothing new) pushes nothing and
// gives an Unchanged result.
func PushWorkspace(ctx context.Context, workspace string, registryHost, app string, opts PushOptions) (*artifact.Result, error) {
	m, err := artifact.ReadManifest(workspace)
	if err != nil {
		return nil, err
	}
	if m.Unchanged {
		return &artifact.Result{Revision: m.Revision, LockedFlake: m.LockedFlake, Unchanged: true}, nil
	}
	if opts.Processes != nil {
		if err := artifact.CheckProcessTypes("build manifest", m.Processes, opts.Processes); err != nil {
			return nil, err
		}
	}
	if err := artifact.CheckResultFits(m.Revision, m.LockedFlake, slices.Collect(maps.Keys(m.Processes))); err != nil {
		return nil, err
	}
	var nameOpts []name.Option
	if opts.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ropts := append(slices.Clone(opts.Remote), remote.WithContext(ctx))
	images := make(map[string]v1.Image, len(m.Processes))
	for _, pt := range slices.Sorted(maps.Keys(m.Processes)) {
		p := m.Processes[pt]
		ref, err := reference(registryHost, app, pt, nameOpts)
		if err != nil {
			return nil, err
		}
		from, ok := sources[p.Kind]
		if !ok {
			return nil, fmt.Errorf("process %q: unknown output kind %q", pt, p.Kind)
		}
		current := func() (v1.Image, error) { return previous(ref, opts.ReuseFrom[pt], ropts) }
		img, stats, err := from(workspace, p, opts.Options, current)
		if err != nil {
			return nil, fmt.Errorf("process %q: %w", pt, err)
		}
		images[pt] = img
		if opts.Progress != nil {
			if stats.Layers > 0 {
				fmt.Fprintf(opts.Progress, "%s: %d layers, %d reused from the registry, %d built (%d bytes compressed)\n",
					pt, stats.Layers, stats.Reused, stats.Layers-stats.Reused, stats.BuiltBytes)
			} else {
				fmt.Fprintf(opts.Progress, "%s: image read from %s\n", pt, p.Archive)
			}
		}
	}
	base := opts.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	counted := &countingTransport{base: base}
	pushed, err := push(ctx, images, registryHost, app, nameOpts, append(slices.Clone(opts.Remote), remote.WithTransport(counted)))
	if err != nil {
		return nil, err
	}
	return &artifact.Result{Revision: m.Revision, LockedFlake: m.LockedFlake, Images: pushed,
		PushedBytes: counted.uploaded.Load(), SkippedBlobs: int(counted.present.Load())}, nil
}

// source makes the image of one process from what the build left in
// workspace. current fetches the image the process type runs now (nil if
// none), for the kinds that reuse its layers.
type source func(workspace string, p artifact.ProcessOutput, opts Options, current func() (v1.Image, error)) (v1.Image, Stats, error)

// sources has one source per output kind.
var sources = map[artifact.Kind]source{
	artifact.KindDockerArchive: fromDockerArchiveOutput,
	artifact.KindNix2Container: fromNix2ContainerOutput,
	artifact.KindClosure:       fromClosureOutput,
}

func fromDockerArchiveOutput(workspace string, p artifact.ProcessOutput, opts Options, _ func() (v1.Image, error)) (v1.Image, Stats, error) {
	if p.Archive == "" {
		return nil, Stats{}, errors.New("docker-archive output names no archive")
	}
	archive, err := workspaceFile(workspace, p.Archive)
	if err != nil {
		return nil, Stats{}, err
	}
	img, err := FromDockerArchive(archive, opts)
	return img, Stats{}, err
}

func fromNix2ContainerOutput(workspace string, p artifact.ProcessOutput, opts Options, current func() (v1.Image, error)) (v1.Image, Stats, error) {
	if p.Nix2ContainerJSON == "" {
		return nil, Stats{}, errors.New("nix2container output names no image JSON")
	}
	prev, err := current()
	if err != nil {
		return nil, Stats{}, err
	}
	doc, err := workspaceFile(workspace, p.Nix2ContainerJSON)
	if err != nil {
		return nil, Stats{}, err
	}
	return FromNix2Container(doc, filepath.Join(workspace, artifact.StoreRoot), p.Closure, opts, prev)
}

func fromClosureOutput(workspace string, p artifact.ProcessOutput, opts Options, current func() (v1.Image, error)) (v1.Image, Stats, error) {
	prev, err := current()
	if err != nil {
		return nil, Stats{}, err
	}
	return FromClosure(filepath.Join(workspace, artifact.StoreRoot), p.Closure, p.OutPath, p.Command, opts, prev)
}

// countingTransport counts what a push uploads (blob bytes) and which blobs
// the registry already had (a HEAD answered 200), for metrics.
type countingTransport struct {
	base     http.RoundTripper
	uploaded atomic.Int64
	present  atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.Contains(req.URL.Path, "/blobs/") {
		return t.base.RoundTrip(req)
	}
	if req.Body != nil && (req.Method == http.MethodPatch || req.Method == http.MethodPut) {
		req = req.Clone(req.Context())
		req.Body = &countingBody{ReadCloser: req.Body, n: &t.uploaded}
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodHead && resp.StatusCode == http.StatusOK {
		t.present.Add(1)
	}
	return resp, err
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

// workspaceFile is the path of a file the build left in the workspace,
// refused unless it is a regular file inside it: the build ran user code,
// and must not make the push (which holds the key) read anything else,
// such as /proc/self/environ through a symlink.
func workspaceFile(workspace, rel string) (string, error) {
	root, err := os.OpenRoot(workspace)
	if err != nil {
		return "", fmt.Errorf("opening the workspace: %w", err)
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if err != nil {
		return "", fmt.Errorf("build output %s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("build output %s is a %s, not a regular file", rel, fi.Mode().Type())
	}
	return filepath.Join(workspace, rel), nil
}

// previous fetches the image whose layer records a push may trust: the one
// herokunix pushed last to ref's repository, by its pinned manifest digest
// (go-containerregistry checks the manifest against the digest, and the
// config, which holds the records, against the manifest). It is nil, and
// nothing is reused, when nothing is pinned, the pin is malformed, or the
// registry does not give that image (gone, or other bytes than pinned):
// reuse is an optimisation, never a reason to fail. Except a 401: that is
// the registry refusing the key (Heroku answers it for a repository the
// key cannot reach), which the push would meet too, so it is an error
// IsUnauthorized recognises, never "no previous image".
func previous(ref name.Tag, pinned string, opts []remote.Option) (v1.Image, error) {
	if !pinnedDigestRE.MatchString(pinned) {
		return nil, nil
	}
	pin := ref.Context().Digest(pinned)
	img, err := remote.Image(pin, opts...)
	if IsUnauthorized(err) {
		return nil, fmt.Errorf("fetching the previous image %s: %w", pin, err)
	}
	if err != nil {
		return nil, nil
	}
	return img, nil
}

var pinnedDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// IsUnauthorized says whether err is the registry refusing the credentials:
// 401 UNAUTHORIZED, which Heroku's registry answers both for a wrong key and
// for a repository the key cannot reach (another account's app, no such
// app; heroku.md "Registry"). [U] A 403 or a DENIED code is taken the same
// way: Heroku is not known to send them, and other registries mean by them
// that the key may not touch the repository.
func IsUnauthorized(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	return terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden ||
		hasCode(terr, transport.UnauthorizedErrorCode, transport.DeniedErrorCode)
}

func hasCode(terr *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range terr.Errors {
		if slices.Contains(codes, d.Code) {
			return true
		}
	}
	return false
}
