/**
 * The resident file server that runs inside a task's sandbox (file-server.ts starts it with
 * `perl -e`, as the sandbox user): one exec per task serves every file tool call, instead of one
 * exec (about 100 ms of engine round trips) per call. Perl because every moat image has it
 * (perl-base is essential in Debian, and git needs it) and it runs from its argument: nothing is
 * written into the sandbox. Where it is missing, the file tools fall back to one exec per call.
 *
 * The workspace is the agent's: any name in it may be a link, a fifo, a device, a huge file, or
 * be swapped for one while it is being opened. So paths are resolved one component at a time,
 * from /workspace, with the current directory as the handle (Perl has no openat): each component
 * is looked at with lstat, a directory is entered with chdir and then checked to be the very one
 * lstat saw (device and inode), and the last one is opened with O_NOFOLLOW | O_NONBLOCK and
 * checked the same way. A link is followed only by reading it and walking its target through the
 * same loop: an absolute target outside /workspace, or a `..` above it, is refused before any
 * step leaves the workspace (openat2's RESOLVE_BENEATH, with links inside the workspace still
 * working as the sandbox made them). Only regular files are read or written (a fifo is refused
 * before it is opened, and an open that would block fails instead), reads stop at the caller's
 * limit, and the server leaves after `idle` seconds without a request, so that a task's idle
 * limit still sees an idle task.
 *
 * Protocol, big-endian: a request is a field count (u32) and fields (u32 length, bytes), the
 * first naming the operation; an answer is a status (u32: 0 done, 3 missing, 4 leads out of the
 * workspace, 5 wrong kind of file, 6 refused, 7 changed while opened, 8 other), a field count and
 * fields. The first answer, before any request, is the server's pid. The host trusts none of it
 * beyond its size caps: the agent can replace this process (file-server.ts).
 */
export const FILE_SERVER_SCRIPT = String.raw`
use strict; use warnings; use Fcntl qw(:DEFAULT :mode); use Errno ();
my $ROOT = '/workspace'; my $IDLE = $ARGV[0] || 30;
binmode STDIN; binmode STDOUT; $SIG{PIPE} = 'IGNORE';
# A pipe of 1 MiB (F_SETPIPE_SZ; best effort): a large answer leaves in one write instead of sixteen waits for the reader.
fcntl(STDOUT, 1031, 1048576);
chdir($ROOT) or exit 2;
my @R = (stat('.'))[0, 1];

sub need { my $n = shift; my $b = ''; while (length($b) < $n) { my $r = sysread(STDIN, $b, $n - length($b), length($b)); exit 0 unless $r; } return $b; }
sub answer {
  my ($status, @f) = @_;
  my $out = pack('NN', $status, scalar @f) . join('', map { pack('N', length $_) . $_ } @f);
  for (my $o = 0; $o < length $out;) { my $w = syswrite(STDOUT, $out, length($out) - $o, $o); exit 0 unless defined $w; $o += $w; }
}
sub fail { die [@_]; }
sub same { return $_[0][0] == $_[1][0] && $_[0][1] == $_[1][1]; }
sub here { my @s = stat('.'); fail(7, "the current directory: $!") unless @s; return [@s[0, 1]]; }
sub enter { my ($name, $st) = @_; chdir($name) or fail(7, "$name: $!"); fail(7, "$name changed while it was opened") unless same(here(), $st); }
sub home { chdir($ROOT) or fail(8, "$ROOT: $!"); fail(7, "$ROOT changed") unless same(here(), \@R); return ([@R]); }
sub parts { return grep { $_ ne '' && $_ ne '.' } split m{/}, $_[0]; }

# (name, its lstat or undef, depth of its directory) with the current directory holding name.
sub walk {
  my ($rel, $follow, $mkdirs) = @_;
  my @stack = home(); my @todo = parts($rel); my $hops = 0;
  while (@todo) {
    my $c = shift @todo;
    if ($c eq '..') {
      fail(4, '..') if @stack == 1;
      pop @stack; chdir('..') or fail(7, "..: $!");
      fail(7, 'a directory moved while it was opened') unless same(here(), $stack[-1]);
      next;
    }
    my $last = !@todo; my @st = lstat($c);
    if (!@st) {
      fail(8, "$c: $!") unless $!{ENOENT};
      return ($c, undef, scalar @stack) if $last;
      fail(3, $c) unless $mkdirs;
      mkdir($c) or $!{EEXIST} or fail(5, "$c: $!");
      @st = lstat($c) or fail(7, $c);
    }
    if (S_ISLNK($st[2]) && ($follow || !$last)) {
      fail(4, 'a chain of more than 40 links') if ++$hops > 40;
      my $t = readlink($c); fail(7, $c) unless defined $t;
      if (substr($t, 0, 1) eq '/') {
        fail(4, $t) unless $t eq $ROOT || substr($t, 0, length($ROOT) + 1) eq "$ROOT/";
        @stack = home(); $t = substr($t, length $ROOT);
      }
      unshift @todo, parts($t);
      next;
    }
    return ($c, \@st, scalar @stack) if $last;
    fail(3, $c) unless S_ISDIR($st[2]);
    enter($c, \@st); push @stack, [@st[0, 1]];
  }
  my @st = lstat('.');
  return ('.', \@st, scalar @stack);
}

sub op_read {
  my ($rel, $limit) = @_;
  my ($c, $st) = walk($rel, 1, 0);
  fail(3, $rel) unless $st; fail(5, $rel) unless S_ISREG($st->[2]);
  sysopen(my $fh, $c, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY) or fail(8, "$!");
  my @f = stat($fh); fail(7, "$rel changed while it was opened") unless S_ISREG($f[2]) && same(\@f, $st);
  my $buf = '';
  while (length($buf) < $limit) { my $r = sysread($fh, $buf, $limit - length($buf), length($buf)); fail(8, "$!") unless defined $r; last if $r == 0; }
  my $size = length $buf;
  $size = $f[7] > $limit ? $f[7] : (sysread($fh, my $more, 1) ? $limit + 1 : $limit) if $size == $limit;
  answer(0, $size, $buf);
}

sub op_list {
  my ($rel, $depth, $max) = @_;
  my ($c, $st) = walk($rel, 1, 0);
  fail(3, $rel) unless $st; fail(5, $rel) unless S_ISDIR($st->[2]);
  enter($c, $st) unless $c eq '.';
  my @out; my $list;
  $list = sub {
    my ($prefix, $level, $at) = @_;
    opendir(my $dh, '.') or fail(8, "$prefix: $!");
    my @names = sort grep { $_ ne '.' && $_ ne '..' } readdir($dh); closedir($dh);
    for my $n (@names) {
      return if @out >= $max;
      next if $level == 1 && $n eq '.git';
      my @s = lstat($n); next unless @s;
      my $t = S_ISREG($s[2]) ? 'f' : S_ISDIR($s[2]) ? 'd' : S_ISLNK($s[2]) ? 'l' : 'o';
      push @out, "$t\t$s[7]\t$prefix$n";
      next unless $t eq 'd' && $level < $depth;
      enter($n, \@s); $list->("$prefix$n/", $level + 1, [@s[0, 1]]);
      chdir('..') or fail(7, "..: $!"); fail(7, 'a directory moved while it was listed') unless same(here(), $at);
    }
  };
  $list->('', 1, here());
  answer(0, join("\0", @out));
}

sub op_write {
  my ($rel, $data) = @_;
  my ($c, $st) = walk($rel, 1, 1);
  fail(5, $rel) if $c eq '.' || ($st && !S_ISREG($st->[2]));
  sysopen(my $fh, $c, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0666) or fail(5, "$!");
  my @f = stat($fh); fail(7, "$rel changed while it was opened") unless S_ISREG($f[2]) && (!$st || same(\@f, $st));
  truncate($fh, 0) or fail(5, "$!");
  for (my $o = 0; $o < length $data;) { my $w = syswrite($fh, $data, length($data) - $o, $o); fail(5, "$!") unless defined $w; $o += $w; }
  close($fh) or fail(5, "$!");
  answer(0, length $data);
}

sub remove_tree {
  my ($n, $st) = @_;
  my $up = here(); enter($n, $st);
  opendir(my $dh, '.') or fail(5, "$n: $!"); my @names = grep { $_ ne '.' && $_ ne '..' } readdir($dh); closedir($dh);
  for my $e (@names) { my @s = lstat($e) or next; if (S_ISDIR($s[2])) { remove_tree($e, \@s); } else { unlink($e) or fail(5, "$e: $!"); } }
  chdir('..') or fail(7, "..: $!"); fail(7, 'a directory moved while it was deleted') unless same(here(), $up);
  rmdir($n) or fail(5, "$n: $!");
}

sub op_delete {
  my ($rel, $recursive) = @_;
  my ($c, $st, $depth) = walk($rel, 0, 0);
  fail(6, $rel) if $c eq '.' || ($depth == 1 && $c eq '.git');
  fail(3, $rel) unless $st;
  if (S_ISDIR($st->[2])) { fail(5, $rel) unless $recursive eq 'recursive'; remove_tree($c, $st); }
  else { unlink($c) or fail(5, "$!"); }
  answer(0);
}

my %ops = (read => \&op_read, list => \&op_list, write => \&op_write, delete => \&op_delete);
answer(0, $$);
while (1) {
  alarm($IDLE); my ($n) = unpack('N', need(4)); alarm(0);
  exit 1 if $n < 1 || $n > 8;
  my @f = map { my ($l) = unpack('N', need(4)); exit 1 if $l > 16 * 1024 * 1024; need($l) } 1 .. $n;
  my $op = $ops{shift @f};
  unless ($op) { answer(8, 'unknown operation'); next; }
  next if eval { $op->(@f); 1 };
  my $e = $@;
  my ($status, $text) = ref $e eq 'ARRAY' ? @$e : (8, "$e");
  answer($status, substr(defined $text ? $text : '', 0, 4000));
}
`;
