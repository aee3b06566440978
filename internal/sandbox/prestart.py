# The python prestart (see prestart_linux.go). A jail's launcher starts the
# interpreter as `python3 -c <this>` ahead of a step, already as the jail's
# user, under the step's namespaces and seccomp filter, with pipes going
# nowhere on fds 0-2 and a socket on fd 3. It waits there for its step: one
# message, "resource value ...\n" (the step's rlimits where they differ
# from those it was started with; only a process itself may lower them, as
# the init lacks CAP_SYS_RESOURCE on many hosts) then the step's argv,
# NUL-separated, with the step's stdin, stdout and stderr attached. It runs
# the script as `python3 script args...` would. If the socket closes
# instead, it was not needed: it exits.
#
# What a script can tell apart from a fresh interpreter: one more frame
# under its own (inspect.stack(), recursion depth), _socket in sys.modules,
# and the CPU it used to start (resource.getrusage). Tracebacks, sys.argv,
# sys.orig_argv, sys.path, __main__, the std streams and exit statuses are
# as in a fresh one.
import sys, os, _socket

del sys.path[0]  # -c's '' (the working directory): the script's own replaces it
sock = _socket.socket(fileno=3)
msg, anc, _, _ = sock.recvmsg(65536, _socket.CMSG_SPACE(3 * 4))
sock.close()
fds = [
    int.from_bytes(data[i : i + 4], sys.byteorder)
    for level, kind, data in anc
    if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
    for i in range(0, len(data) - 3, 4)
]
if len(fds) != 3 or not msg:
    os._exit(0)
for i, fd in enumerate(fds):
    os.dup2(fd, i)
    os.close(fd)
limits, _, argv = msg.partition(b"\n")
if limits:  # only when the step's differ from those it was started with
    import resource

    limits = [int(n) for n in limits.split()]
    for r, v in zip(limits[::2], limits[1::2]):
        resource.setrlimit(r, (v, v))
os.chdir("/box")
sys.orig_argv = [os.fsdecode(a) for a in argv.split(b"\0")]
sys.argv = sys.orig_argv[1:]
path = os.path.join(os.getcwd(), sys.argv[0])
sys.path.insert(0, os.path.dirname(path))
try:
    with sys.modules["io"].open_code(path) as f:
        src = f.read()
except OSError as e:
    print(f"{sys.orig_argv[0]}: can't open file {path!r}: [Errno {e.errno}] {e.strerror}", file=sys.stderr)
    sys.exit(2)
main = type(sys)("__main__")
main.__dict__.update(
    __file__=path,
    __cached__=None,
    __loader__=sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", path),
    __annotations__={},
    __builtins__=sys.modules["builtins"],
)
sys.modules["__main__"] = main
try:
    code = compile(src, path, "exec", dont_inherit=True)
except (SyntaxError, ValueError) as e:
    # CPython prints a script it cannot compile with no traceback at all.
    sys.excepthook(type(e), e.with_traceback(None), None)
    sys.exit(1)
del src
failed = False
try:
    exec(code, main.__dict__)
except SystemExit:
    raise
except BaseException as e:
    # Hide this file's frame: the traceback starts in the script.
    tb = e.__traceback__.tb_next
    sys.excepthook(type(e), e.with_traceback(tb), tb)
    failed = True
    del tb
if failed:
    sys.exit(1)
