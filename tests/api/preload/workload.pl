# Deterministic Perl workload for preload_programs.sh.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
use List::Util qw(sum);

srand(42);
my %h;
$h{"k$_"} = [$_, "v" x ($_ % 40)] for 1 .. 200000;
delete $h{"k$_"} for grep { $_ % 3 == 0 } 1 .. 200000;
print "hash ", scalar(keys %h), " ", sum(map { $_->[0] } values %h), "\n";

my @words = map { join "", map { chr(97 + int(rand(26))) } 1 .. (1 + int(rand(12))) } 1 .. 100000;
my @sorted = sort @words;
print "sort ", md5_hex(join ",", @sorted), "\n";
my %len;
$len{length $_}++ for @words;
print "len ", join(" ", map { "$_=$len{$_}" } sort { $a <=> $b } keys %len), "\n";

my $s = "";
$s .= sprintf("%05d:%s;", $_, $words[$_]) for 0 .. $#words;
print "concat ", length($s), " ", md5_hex($s), "\n";
my @m = ($s =~ /(\d+):(a\w*)/g);
print "match ", scalar(@m), "\n";
(my $t = $s) =~ s/([aeiou])/uc $1/ge;
print "subst ", md5_hex($t), "\n";
my @fields = split /;/, $s;
print "split ", scalar(@fields), "\n";

my @packed = map { pack("N n a*", $_, $_ % 65536, "x" x ($_ % 17)) } 1 .. 50000;
print "pack ", md5_hex(join "", @packed), "\n";

my $big = "abc" x 1_000_000;
substr($big, 1000, 5, "ZZZZZ");
$big .= $big;
print "big ", length($big), " ", md5_hex($big), "\n";

my @aoh = map { { id => $_, name => "n$_", list => [1 .. ($_ % 20)] } } 1 .. 50000;
my $total = 0;
$total += scalar(@{ $_->{list} }) for @aoh;
print "aoh $total\n";
undef @aoh;
