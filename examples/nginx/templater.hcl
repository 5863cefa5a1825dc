# templater configuration (consul-template reads it too, without the templater-only check line): render nginx.conf from the
# healthy instances of a Consul service, check it with `nginx -t` before it
# replaces the live file, then reload nginx.
# Install it as /etc/templater/conf.d/nginx.hcl and the template as
# /etc/templater/nginx.conf.ctmpl: every file in the -config folder is read as
# configuration, so templates live outside it.
consul {
  address = "127.0.0.1:8500"
}

max_stale = "2s"

template {
  source      = "/etc/templater/nginx.conf.ctmpl"
  destination = "/etc/nginx/nginx.conf"
  perms       = 0644
  backup      = true

  # templater only: runs on the candidate file; on failure the live file
  # stays, nginx is not reloaded, and the next change tries again.
  check = "nginx -t -q -c {{path}}"

  command         = "nginx -s reload"
  command_timeout = "30s"
}
