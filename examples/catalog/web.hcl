# One service instance in Consul's service-definition format. Add files like this one
# (or edit it, or set status = "critical") and the tasks watching "web" run again.
service {
  name    = "web"
  id      = "web-1"
  address = "10.0.0.1"
  port    = 80
  tags    = ["v1"]
}
