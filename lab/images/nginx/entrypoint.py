"""Image entrypoint of the lab's nginx-unprivileged: write a per-container nginx.conf, then exec the command.

If the command is nginx, `-c <conf> -p <dir> -e stderr` are added so that nginx uses only its own directory
(the host's /etc/nginx and /var/log/nginx are not writable by uid 101). Other commands run unchanged.
"""
import os
import sys

PAGE_DIRS = ("/usr/share/nginx/html",)

CONF = """pid {dir}/nginx.pid;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 8080;
        server_name localhost;
        location / {{ root {root}; index index.html index.htm; }}
    }}
}}
"""


def main() -> None:
    argv = sys.argv[1:] or ["nginx", "-g", "daemon off;"]
    if os.path.basename(argv[0]) == "nginx":
        home = os.environ.get("HOME") or os.getcwd()
        conf_dir = os.path.join(home, "nginx")
        os.makedirs(os.path.join(conf_dir, "tmp"), exist_ok=True)
        root = next((d for d in PAGE_DIRS if os.path.isdir(d)), conf_dir)
        conf = os.path.join(conf_dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(dir=conf_dir, root=root))
        argv = argv[:1] + ["-c", conf, "-p", conf_dir, "-e", "stderr"] + argv[1:]
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
