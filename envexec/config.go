package main

import "errors"

// loadConfigFiles reads the -config files under the flags.
func loadConfigFiles(o *options, set map[string]bool) error {
	if len(o.configPaths) == 0 {
		return nil
	}
	return errors.New("-config: not implemented yet")
}
