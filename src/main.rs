fn main() {
    println!("vxswitch");
}
