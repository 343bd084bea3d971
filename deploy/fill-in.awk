# Prints a template with each ${NAME} replaced by the environment variable NAME; a NAME unset or
# left at .env.example's value stops it (exit status 1, and a line that no server takes as
# configuration), so the server does not start with it. The compose stack
# fills in its servers' users with it at start: the passwords come from the environment, and
# never sit in a file on the host or in a command line that `ps` shows.
{
    while (match($0, /[$][{][A-Za-z_][A-Za-z0-9_]*[}]/)) {
        name = substr($0, RSTART + 2, RLENGTH - 3)
        problem = !(name in ENVIRON) ? "is not set" : tolower(ENVIRON[name]) == "change-me" ? "is the example value" : ""
        if (problem != "") {
            print "fill-in.awk: " name " " problem "; set a random one (make .env writes them)" > "/dev/stderr"
            print "fill-in.awk: " name " " problem
            exit 1
        }
        $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
    }
    print
}
