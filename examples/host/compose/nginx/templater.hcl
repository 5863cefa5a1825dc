# consul-template's configuration language, read by templater unchanged.
template {
  source      = "/etc/templater/upstream.ctmpl"
  destination = "/etc/nginx/conf.d/upstream.conf"
  perms       = "0644"
}

exec {
  command       = ["/usr/sbin/nginx", "-g", "daemon off;"]
  reload_signal = "SIGHUP"
  kill_signal   = "SIGQUIT"
  kill_timeout  = "10s"
}
