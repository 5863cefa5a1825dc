# templater configuration (consul-template reads it too, without the templater-only check line): render haproxy.cfg from the
# healthy instances of a Consul service, check it with `haproxy -c` before it
# replaces the live file, then reload haproxy (master-worker mode).
# Install it as /etc/templater/conf.d/haproxy.hcl and the template as
# /etc/templater/haproxy.cfg.ctmpl: every file in the -config folder is read as
# configuration, so templates live outside it.
consul {
  address = "127.0.0.1:8500"
}

template {
  source      = "/etc/templater/haproxy.cfg.ctmpl"
  destination = "/etc/haproxy/haproxy.cfg"
  perms       = 0644

  # templater only: the live file stays when the candidate is rejected.
  check = "haproxy -c -q -f {{path}}"

  command         = "systemctl reload haproxy"
  command_timeout = "30s"
}
