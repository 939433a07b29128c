"""tcptune's engine, state and value handling, shipped by tcptune for its Ansible module. The package name
carries a hash of these files, so roles made by different tcptune versions never share one copy. Generated;
do not edit."""
