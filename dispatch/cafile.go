package dispatch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// maxCAFileSize bounds a CA bundle; the system's whole bundle is under 1 MiB.
const maxCAFileSize = 16 << 20

// LoadCAFile returns the TLS settings of an endpoint whose ca_file is path:
// the system's CAs plus the PEM certificates in the file. Configuration
// validation calls it too, so that a wrong path stops walhook at start
// rather than failing every delivery, with the same words.
func LoadCAFile(path string) (*tls.Config, error) {
	if path == "" {
		return nil, errors.New("is empty; leave ca_file out to use the system's CAs")
	}
	// Stat first: reading a FIFO or a device would block or never end.
	info, err := os.Stat(path)
	if err == nil && !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	if err == nil && info.Size() > maxCAFileSize {
		return nil, fmt.Errorf("%q is larger than %d MiB; it should be a few PEM certificates", path, maxCAFileSize>>20)
	}
	var data []byte
	if err == nil {
		data, err = os.ReadFile(path)
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%q does not exist", path)
	case errors.As(err, &pe):
		return nil, fmt.Errorf("cannot read %q: %w", path, pe.Err)
	case err != nil:
		return nil, fmt.Errorf("cannot read %q: %w", path, err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%q holds no PEM certificate (expected -----BEGIN CERTIFICATE----- blocks)", path)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}
