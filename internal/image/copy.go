package image

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// CopyOptions say where Copy reads and writes.
type CopyOptions struct {
	// RegistryHost serves both apps' repositories (Heroku's registry).
	RegistryHost string
	// Insecure reaches the registry over plain HTTP (local and test
	// registries).
	Insecure bool
	// From and To authenticate reads of the source app's repositories and
	// writes to the target's (each app's API key).
	From, To authn.Authenticator
}

// Copy copies the image of each process type from app from, by manifest
// digest (type → digest), to <to>/<type>:latest in the same registry, and
// checks each is the image ID (config digest) expected (type → image ID).
// The manifest is copied byte for byte, so digest and image ID stay the
// same. Blobs the target repository lacks are not downloaded and uploaded
// when the registry can help: the source image is a remote.Image of the
// same registry, so remote.Write asks for a cross-repository mount
// (POST …/blobs/uploads/?mount=<digest>&from=<app>/<type>), which a
// registry answers with 201 (mounted) or with 202 (an ordinary upload,
// which remote.Write then streams from the source). A blob the target has
// already (remote.Write's HEAD first) is not sent at all.
func Copy(ctx context.Context, from, to string, digests, imageIDs map[string]string, opts CopyOptions) error {
	var nameOpts []name.Option
	if opts.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	for _, pt := range slices.Sorted(maps.Keys(digests)) {
		src, err := name.NewDigest(fmt.Sprintf("%s/%s/%s@%s", opts.RegistryHost, from, pt, digests[pt]), append([]name.Option{name.StrictValidation}, nameOpts...)...)
		if err != nil {
			return fmt.Errorf("image name for app %q process %q: %w", from, pt, err)
		}
		dst, err := reference(opts.RegistryHost, to, pt, nameOpts)
		if err != nil {
			return err
		}
		img, err := remote.Image(src, remote.WithContext(ctx), remote.WithAuth(opts.From))
		if err != nil {
			return fmt.Errorf("reading %s: %w", src, err)
		}
		id, err := img.ConfigName()
		if err != nil {
			return fmt.Errorf("reading the config digest of %s: %w", src, err)
		}
		if want := imageIDs[pt]; id.String() != want {
			return fmt.Errorf("%s has image ID %s, not %s", src, id, want)
		}
		if err := remote.Write(dst, img, remote.WithContext(ctx), remote.WithAuth(opts.To)); err != nil {
			return fmt.Errorf("copying %s to %s: %w", src, dst, err)
		}
	}
	return nil
}
