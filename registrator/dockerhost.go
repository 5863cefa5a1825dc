package main

import "os"

// gliderlabsSocket is where gliderlabs/registrator's users mount the Docker
// socket: its image sets DOCKER_HOST=unix:///tmp/docker.sock (its
// Dockerfile), so `docker run -v /var/run/docker.sock:/tmp/docker.sock ...`
// is how it is run.
const gliderlabsSocket = "/tmp/docker.sock"

// dockerHostFallback returns the Docker address to use when neither
// -docker-host nor DOCKER_HOST is given: the gliderlabs mount point when it
// exists (gliderlabs master registrator.go main always uses it then), else
// "" (the Docker client's default, /var/run/docker.sock).
func dockerHostFallback(getenv func(string) string, exists func(string) bool) string {
	if getenv("DOCKER_HOST") != "" {
		return ""
	}
	if exists(gliderlabsSocket) {
		return "unix://" + gliderlabsSocket
	}
	return ""
}

func socketExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeSocket != 0
}
