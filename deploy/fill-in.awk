# Prints a template with each ${NAME} replaced by the environment variable NAME; an unset NAME
# stops it (exit status 1, and a line that no server takes as configuration). The compose stack
# fills in its servers' users with it at start: the passwords come from the environment, and
# never sit in a file on the host or in a command line that `ps` shows.
{
    while (match($0, /[$][{][A-Za-z_][A-Za-z0-9_]*[}]/)) {
        name = substr($0, RSTART + 2, RLENGTH - 3)
        if (!(name in ENVIRON)) {
            print "fill-in.awk: " name " is not set" > "/dev/stderr"
            print "fill-in.awk: " name " is not set"
            exit 1
        }
        $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
    }
    print
}
