version 1.0
workflow hello {
  input { String name }
  call greet { input: name = name }
  output { String out = greet.msg }
}
task greet {
  input { String name }
  command <<< echo "Hello ~{name}" >>>
  output { String msg = read_string(stdout()) }
}
